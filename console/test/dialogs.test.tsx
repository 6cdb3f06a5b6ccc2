import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MockedProvider } from '@apollo/client/testing/react';
import { GraphQLError } from 'graphql';
import { CreateDialog, DeleteDialog } from '../src/dialogs';
import { StalePanel } from '../src/StalePanel';
import { CREATE_SECRET, DELETE_SECRET, DEPENDENTS, PURGE_SECRET, REDEPLOY_STALE, RESTORE_SECRET, SECRET_VERSION } from '../src/api';

beforeAll(() => {
  // happy-dom's <dialog> may lack the modal methods; the component only needs them to exist.
  const proto = HTMLDialogElement.prototype as HTMLDialogElement & Record<string, unknown>;
  proto.showModal ??= function (this: HTMLDialogElement) {
    this.setAttribute('open', '');
  };
  proto.close ??= function (this: HTMLDialogElement) {
    this.removeAttribute('open');
  };
});
afterEach(cleanup);

const pipeline = { __typename: 'Resource', id: 'r1', kind: 'PIPELINE', name: 'nightly-etl' };
const dependent = (state: string) => ({ __typename: 'Dependent', field: 'db.url', state, deployedVersion: 1, resource: pipeline });
const refusal = (code: string) => ({ errors: [new GraphQLError(code.toLowerCase(), { extensions: { code } })] });
const deleteInput = (dryRun: boolean, force: boolean) => ({ input: { name: 'DB_URL', dryRun, force } });
const deleted = (affected: unknown[]) => ({
  data: { deleteSecret: { __typename: 'DeleteSecretPayload', deletedSecretId: null, purgeAt: null, affectedDependents: affected } },
});

describe('Delete', () => {
  it('shows the new impact when something came to depend on the secret meanwhile', async () => {
    const mocks = [
      { request: { query: DELETE_SECRET, variables: deleteInput(true, false) }, result: deleted([]) },
      { request: { query: DELETE_SECRET, variables: deleteInput(false, false) }, result: refusal('HAS_DEPENDENTS') },
      { request: { query: DELETE_SECRET, variables: deleteInput(true, false) }, result: deleted([dependent('UP_TO_DATE')]) },
    ];
    const onDone = vi.fn();
    render(
      <MockedProvider mocks={mocks}>
        <DeleteDialog name="DB_URL" onClose={() => undefined} onDone={onDone} />
      </MockedProvider>,
    );
    await screen.findByText('No deployed pipeline or integration uses DB_URL.');
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));

    await screen.findByText(/nightly-etl/);
    expect(screen.getByRole('alert').textContent).toMatch(/Deployed pipelines or integrations use DB_URL/);
    expect(screen.getByLabelText('Type DB_URL to confirm')).toBeTruthy();
    expect((screen.getByRole('button', { name: 'Delete' }) as HTMLButtonElement).disabled).toBe(true);
    expect(onDone).not.toHaveBeenCalled();
  });
});

describe('Create', () => {
  it('offers to restore a deleted secret that holds the name', async () => {
    const input = { input: { name: 'OLD_KEY', value: 'v' } };
    const mocks = [
      { request: { query: CREATE_SECRET, variables: input }, result: refusal('ALREADY_EXISTS') },
      {
        request: { query: SECRET_VERSION, variables: { name: 'OLD_KEY' } },
        result: {
          data: {
            secret: { __typename: 'Secret', id: 's1', currentVersion: 2, updatedAt: '2026-01-01T00:00:00Z', state: 'DELETED', updatedBy: null },
          },
        },
      },
      {
        request: { query: RESTORE_SECRET, variables: { name: 'OLD_KEY' } },
        result: { data: { restoreSecret: { __typename: 'SecretPayload', secret: { __typename: 'Secret', id: 's1', name: 'OLD_KEY', state: 'ACTIVE' } } } },
      },
      { request: { query: PURGE_SECRET, variables: { name: 'OLD_KEY' } }, result: refusal('NOT_FOUND') },
    ];
    const onDone = vi.fn();
    render(
      <MockedProvider mocks={mocks}>
        <CreateDialog onClose={() => undefined} onDone={onDone} />
      </MockedProvider>,
    );
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'OLD_KEY' } });
    fireEvent.change(screen.getByLabelText('Value'), { target: { value: 'v' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));

    await screen.findByText('A secret named OLD_KEY already exists.');
    fireEvent.click(await screen.findByRole('button', { name: 'Restore OLD_KEY' }));
    await waitFor(() => expect(onDone).toHaveBeenCalledWith('Restored OLD_KEY.'));
  });
});

describe('Redeploy stale', () => {
  const updated = { name: 'DB_URL', version: 2, stale: [dependent('STALE')] as never };

  it('names what could not be redeployed, by code', async () => {
    const mocks = [
      {
        request: { query: REDEPLOY_STALE, variables: { secretName: 'DB_URL' } },
        result: {
          data: {
            redeployStale: {
              __typename: 'RedeployStalePayload',
              deployments: [],
              failed: [{ __typename: 'RedeployFailure', code: 'MISSING_SECRETS', message: 'OTHER is missing', resource: pipeline }],
            },
          },
        },
      },
      { request: { query: DEPENDENTS, variables: { secretName: 'DB_URL' } }, result: { data: { dependents: [dependent('STALE')] } } },
    ];
    render(
      <MockedProvider mocks={mocks}>
        <StalePanel updated={updated} onDismiss={() => undefined} />
      </MockedProvider>,
    );
    fireEvent.click(screen.getByRole('button', { name: 'Redeploy stale (1)' }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toMatch(/pipeline nightly-etl: MISSING_SECRETS/);
  });

  it('says why nothing was tried for a disabled secret', async () => {
    const mocks = [{ request: { query: REDEPLOY_STALE, variables: { secretName: 'DB_URL' } }, result: refusal('SECRET_DISABLED') }];
    render(
      <MockedProvider mocks={mocks}>
        <StalePanel updated={updated} onDismiss={() => undefined} />
      </MockedProvider>,
    );
    fireEvent.click(screen.getByRole('button', { name: 'Redeploy stale (1)' }));
    expect((await screen.findByRole('alert')).textContent).toBe('DB_URL is disabled: enable it first.');
  });
});
