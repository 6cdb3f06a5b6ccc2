// A secret's detail: its facts, versions, dependents (state, pinned version, last fetch
// and its outcome), audit trail, and Disable / Enable (the scream test) / Restore.
import { useState } from 'react';
import { useQuery } from '@apollo/client/react';
import { DISABLE_SECRET, ENABLE_SECRET, SECRET_DETAIL } from './api';
import { useAction, useRestore } from './actions';
import { Alert, Dialog, DialogButtons, Field } from './Dialog';
import { describe, problemOf } from './errors';
import { STATE_LABEL, resourceName, when } from './format';
import { navigate, pathOf } from './router';

export function SecretDetailView({ name }: { name: string }) {
  const { data, error, loading } = useQuery(SECRET_DETAIL, { variables: { name }, fetchPolicy: 'cache-and-network' });
  const [disabling, setDisabling] = useState(false);
  const enable = useAction(ENABLE_SECRET);
  const restore = useRestore();
  const secret = data?.secret;

  const back = (
    <p>
      <a
        href={pathOf({ view: 'list' })}
        onClick={(event) => {
          event.preventDefault();
          navigate({ view: 'list' });
        }}
      >
        ← All secrets
      </a>
    </p>
  );
  if (error) {
    return (
      <main>
        {back}
        <Alert message={describe(problemOf(error), name)} />
      </main>
    );
  }
  if (!secret) {
    return (
      <main>
        {back}
        <p>{loading ? 'Loading…' : `There is no secret named ${name}.`}</p>
      </main>
    );
  }

  return (
    <main>
      {back}
      <div className="title">
        <h1>{secret.name}</h1>
        <span className={`state ${secret.state.toLowerCase()}`}>{STATE_LABEL[secret.state]}</span>
        {secret.state === 'ACTIVE' && (
          <button type="button" onClick={() => setDisabling(true)}>
            Disable
          </button>
        )}
        {secret.state === 'DISABLED' && (
          <button type="button" disabled={enable.busy} onClick={() => void enable.run({ name: secret.name }, secret.name)}>
            Enable
          </button>
        )}
        {secret.state === 'DELETED' && (
          <button type="button" onClick={() => void restore.run(secret.name, () => undefined)}>
            Restore
          </button>
        )}
      </div>
      <Alert message={enable.message ?? restore.problem} />
      {secret.description && <p>{secret.description}</p>}
      <dl className="facts">
        <dt>Current version</dt>
        <dd>{secret.currentVersion}</dd>
        <dt>Created</dt>
        <dd>
          {when(secret.createdAt)}
          {secret.createdBy && ` by ${secret.createdBy.name}`}
        </dd>
        <dt>Updated</dt>
        <dd>
          {when(secret.updatedAt)}
          {secret.updatedBy && ` by ${secret.updatedBy.name}`}
        </dd>
        <dt>Last accessed</dt>
        <dd>{when(secret.lastAccessedAt)}</dd>
        <dt>Rotation</dt>
        <dd>
          {secret.rotationPeriodDays ? `every ${secret.rotationPeriodDays} days, due ${when(secret.rotationDueAt)}` : 'no period set'}
        </dd>
        {secret.state === 'DISABLED' && (
          <>
            <dt>Disabled</dt>
            <dd>
              {when(secret.disabledAt)}: {secret.disabledReason}
            </dd>
          </>
        )}
        {secret.purgeAt && (
          <>
            <dt>Purged on</dt>
            <dd>{when(secret.purgeAt)}</dd>
          </>
        )}
      </dl>

      <h2>Dependents</h2>
      {secret.dependents.length === 0 ? (
        <p>No pipeline or integration references {secret.name}.</p>
      ) : (
        <table aria-label="Dependents">
          <thead>
            <tr>
              <th scope="col">Resource</th>
              <th scope="col">Field</th>
              <th scope="col">State</th>
              <th scope="col">Pinned version</th>
              <th scope="col">Deployed</th>
              <th scope="col">Last fetch</th>
            </tr>
          </thead>
          <tbody>
            {secret.dependents.map((d) => (
              <tr key={`${d.resource.id}/${d.field}`}>
                <th scope="row">{resourceName(d.resource)}</th>
                <td>{d.field}</td>
                <td>{STATE_LABEL[d.state]}</td>
                <td>{d.deployedVersion ?? '—'}</td>
                <td>{when(d.deployedAt)}</td>
                <td>
                  {d.lastFetchedAt
                    ? `${when(d.lastFetchedAt)}: ${d.lastFetchOutcome?.toLowerCase() ?? ''}${d.lastFetchedVersion ? `, version ${d.lastFetchedVersion}` : ''}`
                    : 'never'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Versions</h2>
      <table aria-label="Versions">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Created</th>
            <th scope="col">By</th>
          </tr>
        </thead>
        <tbody>
          {secret.versions.nodes.map((v) => (
            <tr key={v.version}>
              <th scope="row">{v.version}</th>
              <td>{when(v.createdAt)}</td>
              <td>{v.createdBy?.name ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {secret.versions.totalCount > secret.versions.nodes.length && (
        <p className="hint">The newest {secret.versions.nodes.length} of {secret.versions.totalCount} retained versions.</p>
      )}

      <h2>Audit trail</h2>
      <table aria-label="Audit trail">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Action</th>
            <th scope="col">Outcome</th>
            <th scope="col">Who</th>
          </tr>
        </thead>
        <tbody>
          {data.auditEvents.nodes.map((event) => (
            <tr key={event.id}>
              <td>{when(event.occurredAt)}</td>
              <td>{event.action}</td>
              <td>{event.outcome.toLowerCase()}</td>
              <td>{event.principal?.name ?? 'strongroom'}</td>
            </tr>
          ))}
        </tbody>
      </table>

      {disabling && <DisableDialog name={secret.name} onClose={() => setDisabling(false)} />}
    </main>
  );
}

function DisableDialog({ name, onClose }: { name: string; onClose: () => void }) {
  const [reason, setReason] = useState('');
  const disable = useAction(DISABLE_SECRET);
  return (
    <Dialog title={`Disable ${name}`} onClose={onClose}>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          if (await disable.run({ name, reason }, name)) onClose();
        }}
      >
        <p>
          While disabled, every fetch of {name} is refused (SECRET_DISABLED) and deploys that need it fail: whoever still
          uses it will notice. Enable it again at any time.
        </p>
        <Field label="Reason">
          {(id) => <input id={id} required autoComplete="off" value={reason} onChange={(e) => setReason(e.target.value)} />}
        </Field>
        <Alert message={disable.message} />
        <DialogButtons onCancel={onClose}>
          <button type="submit" className="danger" disabled={disable.busy || !reason.trim()}>
            Disable
          </button>
        </DialogButtons>
      </form>
    </Dialog>
  );
}
