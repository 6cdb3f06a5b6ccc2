// Settings → Secrets: the table (one GraphQL request per page, dependents included), its
// search, filters and paging, and the actions on each row.
import { useEffect, useState } from 'react';
import { useQuery } from '@apollo/client/react';
import { SECRETS, type SecretFilter, type SecretRow, type SecretState } from './api';
import { describe, problemOf } from './errors';
import { STATE_LABEL, summary, when } from './format';
import { navigate, pathOf } from './router';
import { CreateDialog, DeleteDialog, EditDialog, PurgeDialog, type Updated } from './dialogs';
import { StalePanel } from './StalePanel';
import { Alert, Field } from './Dialog';
import { useRestore } from './actions';

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;

type Open =
  | { kind: 'create' }
  | { kind: 'edit'; secret: SecretRow }
  | { kind: 'delete'; secret: SecretRow }
  | { kind: 'purge'; secret: SecretRow };

export function SecretsList() {
  const [search, setSearch] = useState('');
  const [nameContains, setNameContains] = useState('');
  const [state, setState] = useState<'' | SecretState>('');
  const [rotationDue, setRotationDue] = useState(false);
  const [notAccessedSince, setNotAccessedSince] = useState('');
  // The `after` cursor of each page shown so far (Relay paging, forwards; back is a pop).
  const [pages, setPages] = useState<(string | undefined)[]>([undefined]);
  const [open, setOpen] = useState<Open | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [updated, setUpdated] = useState<Updated | null>(null);
  const restore = useRestore();

  useEffect(() => {
    const timer = setTimeout(() => setNameContains(search.trim()), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [search]);
  // A new filter starts again from the first page.
  useEffect(() => setPages([undefined]), [nameContains, state, rotationDue, notAccessedSince]);

  const filter: SecretFilter = {};
  if (nameContains) filter.nameContains = nameContains;
  if (state) filter.state = state;
  if (rotationDue) filter.rotationDue = true;
  if (notAccessedSince) filter.notAccessedSince = new Date(`${notAccessedSince}T00:00:00Z`).toISOString();
  const variables = { first: PAGE_SIZE, after: pages[pages.length - 1], filter };
  const { data, previousData, error, loading, refetch } = useQuery(SECRETS, {
    variables,
    fetchPolicy: 'cache-and-network',
  });
  const secrets = (data ?? previousData)?.secrets;

  const done = (message: string) => {
    setOpen(null);
    setNotice(message);
    void refetch();
  };

  return (
    <main>
      <div className="title">
        <h1>Secrets</h1>
        <button type="button" className="primary" onClick={() => setOpen({ kind: 'create' })}>
          Create
        </button>
      </div>
      <p className="hint">
        Running pipelines keep the value they were deployed with until they are redeployed; deleting a secret breaks
        the pipelines that use it.
      </p>

      <div className="filters" role="search">
        <Field label="Search by name">
          {(id) => (
            <input id={id} type="search" autoComplete="off" value={search} onChange={(e) => setSearch(e.target.value)} />
          )}
        </Field>
        <Field label="State">
          {(id) => (
            <select id={id} value={state} onChange={(e) => setState(e.target.value as '' | SecretState)}>
              <option value="">Active and disabled</option>
              <option value="ACTIVE">Active</option>
              <option value="DISABLED">Disabled</option>
              <option value="DELETED">Deleted</option>
            </select>
          )}
        </Field>
        <label className="check">
          <input type="checkbox" checked={rotationDue} onChange={(e) => setRotationDue(e.target.checked)} />
          Rotation due
        </label>
        <Field label="Not accessed since">
          {(id) => (
            <input id={id} type="date" value={notAccessedSince} onChange={(e) => setNotAccessedSince(e.target.value)} />
          )}
        </Field>
      </div>

      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      <Alert message={restore.problem} />
      {updated && <StalePanel updated={updated} onDismiss={() => setUpdated(null)} />}
      <Alert message={error && describe(problemOf(error))} />

      <table aria-label="Secrets" aria-busy={loading}>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">State</th>
            <th scope="col">Current version</th>
            <th scope="col">Updated</th>
            <th scope="col">Dependents</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {secrets?.nodes.map((secret) => (
            <tr key={secret.id}>
              <th scope="row">
                <a
                  href={pathOf({ view: 'secret', name: secret.name })}
                  onClick={(event) => {
                    event.preventDefault();
                    navigate({ view: 'secret', name: secret.name });
                  }}
                >
                  {secret.name}
                </a>
              </th>
              <td>
                {STATE_LABEL[secret.state]}
                {secret.state === 'DELETED' && secret.purgeAt && <span className="hint"> · purged {when(secret.purgeAt)}</span>}
                {secret.rotationDueAt && new Date(secret.rotationDueAt) < new Date() && (
                  <span className="hint"> · rotation due</span>
                )}
              </td>
              <td>{secret.currentVersion}</td>
              <td>
                <time dateTime={secret.updatedAt}>{when(secret.updatedAt)}</time>
              </td>
              <td>{summary(secret.dependents)}</td>
              <td>
                <div className="actions">
                {secret.state === 'DELETED' ? (
                  <>
                    <button type="button" onClick={() => restore.run(secret.name, () => done(`Restored ${secret.name}.`))}>
                      Restore<span className="visually-hidden"> {secret.name}</span>
                    </button>
                    <button type="button" className="danger" onClick={() => setOpen({ kind: 'purge', secret })}>
                      Purge<span className="visually-hidden"> {secret.name}</span>
                    </button>
                  </>
                ) : (
                  <>
                    <button type="button" onClick={() => setOpen({ kind: 'edit', secret })}>
                      Edit<span className="visually-hidden"> {secret.name}</span>
                    </button>
                    <button type="button" className="danger" onClick={() => setOpen({ kind: 'delete', secret })}>
                      Delete<span className="visually-hidden"> {secret.name}</span>
                    </button>
                  </>
                )}
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {secrets && secrets.nodes.length === 0 && <p className="empty">No secrets match.</p>}

      <nav className="paging" aria-label="Pages">
        <span>{secrets ? `Page ${pages.length} · ${secrets.totalCount} in all` : 'Loading…'}</span>
        <button
          type="button"
          disabled={pages.length < 2}
          onClick={() => setPages(pages.slice(0, -1))}
        >
          Previous page
        </button>
        <button
          type="button"
          disabled={!secrets?.pageInfo.hasNextPage || !secrets.pageInfo.endCursor}
          onClick={() => setPages([...pages, secrets?.pageInfo.endCursor ?? undefined])}
        >
          Next page
        </button>
      </nav>

      {open?.kind === 'create' && (
        <CreateDialog onClose={() => setOpen(null)} onDone={done} />
      )}
      {open?.kind === 'edit' && (
        <EditDialog
          secret={open.secret}
          onClose={() => setOpen(null)}
          onUpdated={(result) => {
            setOpen(null);
            setNotice(null);
            setUpdated(result);
            void refetch();
          }}
        />
      )}
      {open?.kind === 'delete' && <DeleteDialog name={open.secret.name} onClose={() => setOpen(null)} onDone={done} />}
      {open?.kind === 'purge' && <PurgeDialog name={open.secret.name} onClose={() => setOpen(null)} onDone={done} />}
    </main>
  );
}
