// The dialogs of the list: Create, Update (with expectedVersion), Delete (impact first, then
// a typed confirmation when something would break), Purge. Typed values live in these
// components' state only, and every value control has autocomplete off, so the browser
// keeps no copy of it (its form-restore state is written to disk).
import { useEffect, useState } from 'react';
import { useApolloClient } from '@apollo/client/react';
import {
  CREATE_SECRET,
  DELETE_SECRET,
  PURGE_SECRET,
  RESTORE_SECRET,
  SECRET_VERSION,
  UPDATE_SECRET,
  type DependentRow,
  type SecretRow,
} from './api';
import { useAction } from './actions';
import { Alert, Dialog, DialogButtons, Field } from './Dialog';
import { STATE_LABEL, resourceName, when } from './format';

export function CreateDialog({ onClose, onDone }: { onClose: () => void; onDone: (message: string) => void }) {
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [description, setDescription] = useState('');
  const [rotation, setRotation] = useState('');
  const [deletedHolder, setDeletedHolder] = useState(false);
  const create = useAction(CREATE_SECRET);
  const restore = useAction(RESTORE_SECRET);
  const purge = useAction(PURGE_SECRET);
  const client = useApolloClient();

  const save = async (event: React.FormEvent) => {
    event.preventDefault();
    setDeletedHolder(false);
    const input: { name: string; value: string; description?: string; rotationPeriodDays?: number } = { name, value };
    if (description.trim()) input.description = description;
    if (rotation.trim()) input.rotationPeriodDays = Number(rotation);
    const created = await create.run({ input }, name);
    if (created) {
      onDone(`Created ${created.createSecret.secret.name}.`);
      return;
    }
  };
  // ALREADY_EXISTS from a deleted secret: its name is reserved until it is purged.
  useEffect(() => {
    if (create.problem?.code !== 'ALREADY_EXISTS') return;
    void client
      .query({ query: SECRET_VERSION, variables: { name }, fetchPolicy: 'network-only' })
      .then((result) => setDeletedHolder(result.data?.secret?.state === 'DELETED'))
      .catch(() => undefined);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [create.problem]);

  return (
    <Dialog title="Create secret" onClose={onClose}>
      <form onSubmit={save}>
        <Field label="Name" hint="Letters, digits and _, not starting with a digit. Cannot be changed later.">
          {(id) => (
            <input id={id} autoComplete="off" spellCheck={false} required value={name} onChange={(e) => setName(e.target.value)} />
          )}
        </Field>
        <Field label="Value">
          {(id) => (
            <textarea id={id} autoComplete="off" spellCheck={false} required rows={3} value={value} onChange={(e) => setValue(e.target.value)} />
          )}
        </Field>
        <Field label="Description">
          {(id) => <input id={id} autoComplete="off" value={description} onChange={(e) => setDescription(e.target.value)} />}
        </Field>
        <Field label="Rotation period (days)" hint="Optional: rotation is due this many days after each change.">
          {(id) => (
            <input id={id} type="number" min={1} max={3650} autoComplete="off" value={rotation} onChange={(e) => setRotation(e.target.value)} />
          )}
        </Field>
        {create.message && (
          <div role="alert" className="problem">
            <p>{create.message}</p>
            {deletedHolder && (
              <>
                <p>It was deleted and can still be restored; or purge it to free the name.</p>
                <button
                  type="button"
                  onClick={async () => {
                    if (await restore.run({ name }, name)) onDone(`Restored ${name}.`);
                  }}
                >
                  Restore {name}
                </button>
                <button
                  type="button"
                  className="danger"
                  onClick={async () => {
                    if (await purge.run({ name }, name)) {
                      create.clear();
                      setDeletedHolder(false);
                    }
                  }}
                >
                  Purge {name}
                </button>
              </>
            )}
          </div>
        )}
        <Alert message={restore.message ?? purge.message} />
        <DialogButtons onCancel={onClose}>
          <button type="submit" className="primary" disabled={create.busy}>
            Save
          </button>
        </DialogButtons>
      </form>
    </Dialog>
  );
}

export interface Updated {
  name: string;
  version: number;
  stale: DependentRow[];
}

export function EditDialog({
  secret,
  onClose,
  onUpdated,
}: {
  secret: SecretRow;
  onClose: () => void;
  onUpdated: (updated: Updated) => void;
}) {
  const [value, setValue] = useState('');
  const [expectedVersion, setExpectedVersion] = useState(secret.currentVersion);
  const [changedBy, setChangedBy] = useState<string | null>(null);
  const update = useAction(UPDATE_SECRET);
  const client = useApolloClient();
  const name = secret.name;

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const result = await update.run({ input: { name, value, expectedVersion } }, name);
    if (result) {
      const { secret: now, staleDependents } = result.updateSecret;
      onUpdated({ name, version: now.currentVersion, stale: staleDependents });
    }
  };
  // Who changed it, to say so.
  useEffect(() => {
    if (update.problem?.code !== 'VERSION_CONFLICT') return;
    void client
      .query({ query: SECRET_VERSION, variables: { name }, fetchPolicy: 'network-only' })
      .then(({ data }) => {
        const now = data?.secret;
        if (!now) return;
        const who = now.updatedBy ? ` by ${now.updatedBy.name}` : '';
        setChangedBy(`It is now at version ${now.currentVersion}, changed${who} at ${when(now.updatedAt)}.`);
      })
      .catch(() => undefined);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [update.problem]);

  const reload = async () => {
    const { data } = await client.query({ query: SECRET_VERSION, variables: { name }, fetchPolicy: 'network-only' });
    if (data?.secret) setExpectedVersion(data.secret.currentVersion);
    setChangedBy(null);
    update.clear();
  };

  return (
    <Dialog title={`Update ${name}`} onClose={onClose}>
      <form onSubmit={submit}>
        <p>
          A new value becomes version {expectedVersion + 1}. Running pipelines keep the old value until they are
          redeployed.
        </p>
        <Field label="Value">
          {(id) => (
            <textarea id={id} autoComplete="off" spellCheck={false} required rows={3} value={value} onChange={(e) => setValue(e.target.value)} />
          )}
        </Field>
        {update.message && (
          <div role="alert" className="problem">
            <p>
              {update.message} {changedBy}
            </p>
            {update.problem?.code === 'VERSION_CONFLICT' && (
              <p>
                Reload to update over their change with your value, or cancel.{' '}
                <button type="button" onClick={() => void reload()}>
                  Reload
                </button>
              </p>
            )}
          </div>
        )}
        <DialogButtons onCancel={onClose}>
          <button type="submit" className="primary" disabled={update.busy || update.problem?.code === 'VERSION_CONFLICT'}>
            Update
          </button>
        </DialogButtons>
      </form>
    </Dialog>
  );
}

/// Deployed dependents break when their secret is deleted; the others only lose a reference.
function breaks(dependent: DependentRow): boolean {
  return dependent.state === 'UP_TO_DATE' || dependent.state === 'STALE';
}

export function DeleteDialog({ name, onClose, onDone }: { name: string; onClose: () => void; onDone: (message: string) => void }) {
  const [impact, setImpact] = useState<DependentRow[] | null>(null);
  const [typed, setTyped] = useState('');
  const dryRun = useAction(DELETE_SECRET);
  const remove = useAction(DELETE_SECRET);

  const check = async () => {
    const result = await dryRun.run({ input: { name, dryRun: true, force: false } }, name);
    if (result) setImpact(result.deleteSecret.affectedDependents);
  };
  useEffect(() => {
    void check();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [name]);

  const breaking = impact?.filter(breaks) ?? [];
  const others = impact?.filter((d) => !breaks(d)) ?? [];
  const confirmed = breaking.length === 0 || typed === name;

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!impact || !confirmed) return;
    const result = await remove.run({ input: { name, dryRun: false, force: breaking.length > 0 } }, name);
    if (result) {
      const until = result.deleteSecret.purgeAt ? `; it can be restored until ${when(result.deleteSecret.purgeAt)}` : '';
      onDone(`Deleted ${name}${until}.`);
    } else {
      // Something new may depend on it (HAS_DEPENDENTS): show the impact as it is now.
      setTyped('');
      void check();
    }
  };

  return (
    <Dialog title={`Delete ${name}`} onClose={onClose}>
      <form onSubmit={submit}>
        {!impact && !dryRun.message && <p>Checking what depends on {name}…</p>}
        <Alert message={dryRun.message} />
        {impact && breaking.length === 0 && <p>No deployed pipeline or integration uses {name}.</p>}
        {breaking.length > 0 && (
          <section aria-label="What would break">
            <p>
              {breaking.length === 1
                ? `Deleting ${name} breaks this deployment: it fails until ${name} is restored or the reference removed.`
                : `Deleting ${name} breaks these ${breaking.length} deployments: they fail until ${name} is restored or the references removed.`}
            </p>
            <ul>
              {breaking.map((d) => (
                <li key={`${d.resource.id}/${d.field}`}>
                  {resourceName(d.resource)} ({d.field}, version {d.deployedVersion ?? '—'}, {STATE_LABEL[d.state].toLowerCase()})
                </li>
              ))}
            </ul>
          </section>
        )}
        {others.length > 0 && (
          <p>
            Also referenced, not deployed: {others.map((d) => resourceName(d.resource)).join(', ')}.
          </p>
        )}
        {impact && <p>A deleted secret can be restored until the end of its recovery window.</p>}
        {breaking.length > 0 && (
          <Field label={`Type ${name} to confirm`}>
            {(id) => <input id={id} autoComplete="off" spellCheck={false} value={typed} onChange={(e) => setTyped(e.target.value)} />}
          </Field>
        )}
        <Alert message={remove.message} />
        <DialogButtons onCancel={onClose}>
          <button type="submit" className="danger" disabled={!impact || !confirmed || remove.busy}>
            Delete
          </button>
        </DialogButtons>
      </form>
    </Dialog>
  );
}

export function PurgeDialog({ name, onClose, onDone }: { name: string; onClose: () => void; onDone: (message: string) => void }) {
  const purge = useAction(PURGE_SECRET);
  return (
    <Dialog title={`Purge ${name}`} onClose={onClose}>
      <p>Purging destroys every version of {name} and its keys now. It cannot be undone; the name becomes free.</p>
      <Alert message={purge.message} />
      <DialogButtons onCancel={onClose}>
        <button
          type="button"
          className="danger"
          disabled={purge.busy}
          onClick={async () => {
            if (await purge.run({ name }, name)) onDone(`Purged ${name}.`);
          }}
        >
          Purge
        </button>
      </DialogButtons>
    </Dialog>
  );
}
