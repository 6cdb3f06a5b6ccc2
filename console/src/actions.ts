// A mutation as the dialogs and buttons use it: run it, remember the problem (as a message
// and its code) if it fails, and say whether it is under way.
import { useState } from 'react';
import { useMutation } from '@apollo/client/react';
import type { OperationVariables, TypedDocumentNode } from '@apollo/client';
import { describe, problemOf, type Problem } from './errors';
import { RESTORE_SECRET } from './api';

export interface Action<Data, Vars> {
  run: (variables: Vars, name: string) => Promise<Data | null>;
  busy: boolean;
  problem: Problem | null;
  message: string | null;
  clear: () => void;
}

export function useAction<Data, Vars extends OperationVariables>(document: TypedDocumentNode<Data, Vars>): Action<Data, Vars> {
  const [mutate] = useMutation(document);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<{ problem: Problem; message: string } | null>(null);
  const run = async (variables: Vars, name: string) => {
    setBusy(true);
    setFailure(null);
    try {
      // The generic Vars defeat useMutation's overloads; the documents' own types hold.
      const result = await (mutate as (options: { variables: Vars }) => Promise<{ data?: unknown }>)({ variables });
      return (result.data as Data | undefined) ?? null;
    } catch (error) {
      const problem = problemOf(error);
      setFailure({ problem, message: describe(problem, name) });
      return null;
    } finally {
      setBusy(false);
    }
  };
  return {
    run,
    busy,
    problem: failure?.problem ?? null,
    message: failure?.message ?? null,
    clear: () => setFailure(null),
  };
}

/// Restore, from a deleted row or a detail page.
export function useRestore() {
  const action = useAction(RESTORE_SECRET);
  return {
    problem: action.message,
    run: async (name: string, then: () => void) => {
      if (await action.run({ name }, name)) then();
    },
  };
}
