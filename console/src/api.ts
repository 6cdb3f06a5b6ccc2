// The GraphQL documents the console sends, and the shapes it reads back. The list asks for
// each secret's dependents in the same request (one request per page, never one per row).
import { gql } from '@apollo/client';
import type { TypedDocumentNode } from '@apollo/client';

export type Role = 'ADMIN' | 'MEMBER' | 'VIEWER' | 'RUNTIME' | 'INSPECTOR';
export type SecretState = 'ACTIVE' | 'DISABLED' | 'DELETED';
export type DependentState = 'UP_TO_DATE' | 'STALE' | 'NOT_DEPLOYED' | 'BROKEN' | 'NOT_ALLOWED';

export interface ResourceRef {
  id: string;
  kind: 'PIPELINE' | 'INTEGRATION';
  name: string;
}

export interface DependentRow {
  field: string;
  state: DependentState;
  deployedVersion: number | null;
  resource: ResourceRef;
}

export interface SecretRow {
  id: string;
  name: string;
  state: SecretState;
  currentVersion: number;
  updatedAt: string;
  purgeAt: string | null;
  rotationDueAt: string | null;
  dependents: { state: DependentState }[];
}

export interface PageInfo {
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

export interface SecretFilter {
  nameContains?: string;
  state?: SecretState;
  rotationDue?: boolean;
  notAccessedSince?: string;
}

export interface SecretsVars {
  first?: number;
  after?: string;
  last?: number;
  before?: string;
  filter: SecretFilter;
}

export const VIEWER_QUERY = `query ConsoleViewer {
  viewer { role principal { name kind } organization { name } }
}`;

export interface Viewer {
  role: Role;
  principal: { name: string; kind: string };
  organization: { name: string };
}

export const SECRETS: TypedDocumentNode<
  { secrets: { totalCount: number; pageInfo: PageInfo; nodes: SecretRow[] } },
  SecretsVars
> = gql`
  query ConsoleSecrets($first: Int, $after: String, $last: Int, $before: String, $filter: SecretFilter) {
    secrets(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes {
        id name state currentVersion updatedAt purgeAt rotationDueAt
        dependents { state }
      }
    }
  }
`;

export interface SecretDetail {
  id: string;
  name: string;
  description: string | null;
  state: SecretState;
  currentVersion: number;
  createdAt: string;
  updatedAt: string;
  disabledAt: string | null;
  disabledReason: string | null;
  purgeAt: string | null;
  lastAccessedAt: string | null;
  rotationPeriodDays: number | null;
  rotationDueAt: string | null;
  createdBy: { name: string } | null;
  updatedBy: { name: string } | null;
  versions: { totalCount: number; nodes: { version: number; createdAt: string; createdBy: { name: string } | null }[] };
  dependents: (DependentRow & {
    deployedAt: string | null;
    lastFetchedAt: string | null;
    lastFetchedVersion: number | null;
    lastFetchOutcome: 'SERVED' | 'DISABLED' | 'BROKEN' | null;
  })[];
}

export interface AuditRow {
  id: string;
  occurredAt: string;
  action: string;
  outcome: 'ALLOWED' | 'DENIED' | 'FAILED';
  principal: { name: string } | null;
}

export const SECRET_DETAIL: TypedDocumentNode<
  { secret: SecretDetail | null; auditEvents: { nodes: AuditRow[] } },
  { name: string }
> = gql`
  query ConsoleSecret($name: String!) {
    secret(name: $name) {
      id name description state currentVersion createdAt updatedAt disabledAt disabledReason
      purgeAt lastAccessedAt rotationPeriodDays rotationDueAt
      createdBy { id name }
      updatedBy { id name }
      versions(first: 20) { totalCount nodes { version createdAt createdBy { id name } } }
      dependents {
        field state deployedVersion deployedAt lastFetchedAt lastFetchedVersion lastFetchOutcome
        resource { id kind name }
      }
    }
    auditEvents(first: 20, filter: { targetName: $name }) {
      nodes { id occurredAt action outcome principal { id name } }
    }
  }
`;

// Who changed a secret last, for a VERSION_CONFLICT's message.
export const SECRET_VERSION: TypedDocumentNode<
  { secret: { id: string; currentVersion: number; updatedAt: string; updatedBy: { name: string } | null; state: SecretState } | null },
  { name: string }
> = gql`
  query ConsoleSecretVersion($name: String!) {
    secret(name: $name) { id currentVersion updatedAt state updatedBy { id name } }
  }
`;

const DEPENDENT = gql`
  fragment ConsoleDependent on Dependent {
    field state deployedVersion resource { id kind name }
  }
`;

export const DEPENDENTS: TypedDocumentNode<{ dependents: DependentRow[] }, { secretName: string }> = gql`
  query ConsoleDependents($secretName: String!) {
    dependents(secretName: $secretName) { ...ConsoleDependent }
  }
  ${DEPENDENT}
`;

export const CREATE_SECRET: TypedDocumentNode<
  { createSecret: { secret: { id: string; name: string } } },
  { input: { name: string; value: string; description?: string; rotationPeriodDays?: number } }
> = gql`
  mutation ConsoleCreateSecret($input: CreateSecretInput!) {
    createSecret(input: $input) { secret { id name } }
  }
`;

export const UPDATE_SECRET: TypedDocumentNode<
  { updateSecret: { secret: { id: string; name: string; currentVersion: number }; staleDependents: DependentRow[] } },
  { input: { name: string; value?: string; description?: string | null; expectedVersion: number } }
> = gql`
  mutation ConsoleUpdateSecret($input: UpdateSecretInput!) {
    updateSecret(input: $input) {
      secret { id name currentVersion updatedAt }
      staleDependents { ...ConsoleDependent }
    }
  }
  ${DEPENDENT}
`;

export const DELETE_SECRET: TypedDocumentNode<
  { deleteSecret: { deletedSecretId: string | null; purgeAt: string | null; affectedDependents: DependentRow[] } },
  { input: { name: string; dryRun: boolean; force: boolean } }
> = gql`
  mutation ConsoleDeleteSecret($input: DeleteSecretInput!) {
    deleteSecret(input: $input) {
      deletedSecretId purgeAt
      affectedDependents { ...ConsoleDependent }
    }
  }
  ${DEPENDENT}
`;

export const REDEPLOY_STALE: TypedDocumentNode<
  { redeployStale: { deployments: { id: string; resource: ResourceRef }[]; failed: { resource: ResourceRef; code: string; message: string }[] } },
  { secretName: string }
> = gql`
  mutation ConsoleRedeployStale($secretName: String!) {
    redeployStale(input: { secretName: $secretName }) {
      deployments { id resource { id kind name } }
      failed { code message resource { id kind name } }
    }
  }
`;

type StateChange = TypedDocumentNode<{ [field: string]: { secret: { id: string; name: string; state: SecretState } } }, { name: string }>;

export const RESTORE_SECRET: StateChange = gql`
  mutation ConsoleRestoreSecret($name: String!) {
    restoreSecret(input: { name: $name }) { secret { id name state } }
  }
`;

export const ENABLE_SECRET: StateChange = gql`
  mutation ConsoleEnableSecret($name: String!) {
    enableSecret(input: { name: $name }) { secret { id name state } }
  }
`;

export const DISABLE_SECRET: TypedDocumentNode<
  { disableSecret: { secret: { id: string; name: string; state: SecretState } } },
  { name: string; reason: string }
> = gql`
  mutation ConsoleDisableSecret($name: String!, $reason: String!) {
    disableSecret(input: { name: $name, reason: $reason }) { secret { id name state disabledReason } }
  }
`;

export const PURGE_SECRET: TypedDocumentNode<{ purgeSecret: { purgedSecretId: string } }, { name: string }> = gql`
  mutation ConsolePurgeSecret($name: String!) {
    purgeSecret(input: { name: $name }) { purgedSecretId }
  }
`;

// Live rows: any change to a secret or to a dependent's state refetches what is shown.
export const SECRET_EVENTS: TypedDocumentNode<{ secretEvents: { kind: string; secretName: string } }, Record<string, never>> = gql`
  subscription ConsoleSecretEvents {
    secretEvents { kind secretName version }
  }
`;

export const DEPENDENT_EVENTS: TypedDocumentNode<{ dependentEvents: { secretName: string } }, Record<string, never>> = gql`
  subscription ConsoleDependentEvents {
    dependentEvents { secretName dependent { state } }
  }
`;
