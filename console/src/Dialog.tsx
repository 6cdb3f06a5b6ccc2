// A modal dialog on the browser's own <dialog>: role=dialog, named by its title, focus
// moved into it and kept there, Escape closes it, focus goes back where it was.
import { useEffect, useId, useRef, type ReactNode } from 'react';

export function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const opener = document.activeElement as HTMLElement | null;
    if (!dialog.open) dialog.showModal();
    return () => {
      dialog.close();
      opener?.focus?.();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(event) => {
        // Escape: React decides when the dialog goes, so it is not closed under it.
        event.preventDefault();
        onClose();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {children}
    </dialog>
  );
}

/// A labelled field: the label names the control, as the tests and screen readers find it.
export function Field({
  label,
  children,
  hint,
}: {
  label: string;
  children: (id: string) => ReactNode;
  hint?: string;
}) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(id)}
      {hint && <p className="hint">{hint}</p>}
    </div>
  );
}

/// A problem to announce (role=alert), if there is one.
export function Alert({ message }: { message: string | null | undefined }) {
  return message ? (
    <p role="alert" className="problem">
      {message}
    </p>
  ) : null;
}

/// A dialog's Cancel and its confirming button (`children`).
export function DialogButtons({ onCancel, children }: { onCancel: () => void; children: ReactNode }) {
  return (
    <div className="buttons">
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
      {children}
    </div>
  );
}
