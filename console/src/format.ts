import type { DependentState, ResourceRef } from './api';

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export const STATE_LABEL: Record<string, string> = {
  ACTIVE: 'Active',
  DISABLED: 'Disabled',
  DELETED: 'Deleted',
  UP_TO_DATE: 'Up to date',
  STALE: 'Stale',
  NOT_DEPLOYED: 'Not deployed',
  BROKEN: 'Broken',
  NOT_ALLOWED: 'Not allowed',
};

/// "N up to date · M stale · K broken", from the dependents' states.
export function summary(dependents: { state: DependentState }[]): string {
  if (dependents.length === 0) return 'No dependents';
  const count = (state: DependentState) => dependents.filter((d) => d.state === state).length;
  return `${count('UP_TO_DATE')} up to date · ${count('STALE')} stale · ${count('BROKEN')} broken`;
}

export function resourceName(resource: ResourceRef): string {
  return `${resource.kind === 'PIPELINE' ? 'pipeline' : 'integration'} ${resource.name}`;
}
