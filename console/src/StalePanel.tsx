// After an update: the dependents that now run an older version, by name, and the button
// that redeploys exactly those; then how they stand.
import { useState } from 'react';
import { useQuery } from '@apollo/client/react';
import { DEPENDENTS, REDEPLOY_STALE } from './api';
import { useAction } from './actions';
import { Alert } from './Dialog';
import type { Updated } from './dialogs';
import { STATE_LABEL, resourceName } from './format';

export function StalePanel({ updated, onDismiss }: { updated: Updated; onDismiss: () => void }) {
  const { name, version, stale } = updated;
  const [redeployed, setRedeployed] = useState(false);
  const [failed, setFailed] = useState<{ who: string; code: string; message: string }[]>([]);
  const redeploy = useAction(REDEPLOY_STALE);
  // How the stale ones stand now (live: the console refetches it on dependent events).
  const { data } = useQuery(DEPENDENTS, {
    variables: { secretName: name },
    skip: !redeployed,
    fetchPolicy: 'network-only',
  });
  const staleIds = new Set(stale.map((d) => d.resource.id));
  const now = data?.dependents.filter((d) => staleIds.has(d.resource.id));

  const run = async () => {
    const result = await redeploy.run({ secretName: name }, name);
    if (!result) return;
    setFailed(
      result.redeployStale.failed.map((f) => ({ who: resourceName(f.resource), code: f.code, message: f.message })),
    );
    setRedeployed(true);
  };

  const headingId = `stale-${name}`;
  return (
    <section className="panel" aria-labelledby={headingId}>
      <h2 id={headingId}>
        {name} is now at version {version}
      </h2>
      {stale.length === 0 ? (
        <p>No deployed pipeline or integration runs an older version.</p>
      ) : !redeployed ? (
        <>
          <p>
            {stale.length === 1
              ? 'This dependent is now stale: it keeps running the old value until redeployed.'
              : `These ${stale.length} dependents are now stale: they keep running the old value until redeployed.`}
          </p>
          <ul aria-label="Stale dependents">
            {stale.map((d) => (
              <li key={`${d.resource.id}/${d.field}`}>
                {resourceName(d.resource)} ({d.field}, version {d.deployedVersion ?? '—'})
              </li>
            ))}
          </ul>
          <button type="button" className="primary" disabled={redeploy.busy} onClick={() => void run()}>
            Redeploy stale ({stale.length})
          </button>
        </>
      ) : (
        <ul aria-label="Redeployed dependents">
          {(now ?? stale).map((d) => (
            <li key={`${d.resource.id}/${d.field}`}>
              {resourceName(d.resource)} ({d.field}): {now ? STATE_LABEL[d.state].toLowerCase() : 'redeploying…'}
            </li>
          ))}
        </ul>
      )}
      {failed.length > 0 && (
        <div role="alert" className="problem">
          <p>These could not be redeployed:</p>
          <ul>
            {failed.map((f) => (
              <li key={f.who}>
                {f.who}: {f.code} ({f.message})
              </li>
            ))}
          </ul>
        </div>
      )}
      <Alert message={redeploy.message} />
      <button type="button" onClick={onDismiss}>
        Dismiss
      </button>
    </section>
  );
}
