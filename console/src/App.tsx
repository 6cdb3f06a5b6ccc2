// Sign-in and who may see what. With single sign-on offered by the server, a person signs
// in at their OpenID provider (the server holds the session; the page holds no token) and
// a reload keeps them signed in; a pasted API token works either way, held here in memory
// only: a reload asks again. Admins get the console; members, viewers and other roles a
// page that says they have no access (and names no secret); a pipeline runtime's token is
// refused.
import { useEffect, useState, useSyncExternalStore } from 'react';
import { ApolloProvider } from '@apollo/client/react';
import { endSsoSession, openSession, ssoOffered, whoIs, type Session } from './client';
import { VIEWER_QUERY, type Viewer } from './api';
import { describe } from './errors';
import { Console } from './Console';
import { NoAccess } from './NoAccess';

interface SignedIn {
  viewer: Viewer;
  session: Session | null;
  /// Signed in with single sign-on: signing out ends the server's session.
  sso: boolean;
}

export function App() {
  const [signedIn, setSignedIn] = useState<SignedIn | null>(null);
  // Unknown until the server says whether it offers single sign-on.
  const [sso, setSso] = useState<boolean | null>(null);
  useEffect(() => {
    let current = true;
    void (async () => {
      const offered = await ssoOffered();
      if (!current) return;
      if (offered) {
        // A session cookie, if the browser holds one, signs the person in.
        const answer = await whoIs(null, VIEWER_QUERY, 'ConsoleViewer').catch(() => null);
        const viewer: Viewer | undefined = answer?.data?.viewer;
        if (current && viewer) {
          setSignedIn({ viewer, session: viewer.role === 'ADMIN' ? openSession(null) : null, sso: true });
        }
      }
      if (current) setSso(offered);
    })();
    return () => {
      current = false;
    };
  }, []);
  const signOut = async () => {
    signedIn?.session?.close();
    if (signedIn?.sso) await endSsoSession().catch(() => undefined);
    setSignedIn(null);
  };

  if (!signedIn) {
    if (sso === null) {
      return (
        <main className="sign-in">
          <h1>Sign in to strongroom</h1>
          <p role="status">Checking sign-in…</p>
        </main>
      );
    }
    return <SignIn sso={sso} onSignedIn={setSignedIn} />;
  }
  const { viewer, session } = signedIn;
  return (
    <>
      <header className="bar">
        <span className="brand">strongroom</span>
        {session && <LiveStatus session={session} />}
        <span className="who">
          {viewer.principal.name} · {viewer.role.toLowerCase()} · {viewer.organization.name}
        </span>
        <button type="button" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      {session ? (
        <ApolloProvider client={session.client}>
          <Console />
        </ApolloProvider>
      ) : (
        <NoAccess viewer={viewer} />
      )}
    </>
  );
}

const LIVE_TEXT = { connecting: 'Connecting live updates…', live: 'Live updates on', offline: 'Live updates off' };

function LiveStatus({ session }: { session: Session }) {
  const live = useSyncExternalStore(session.live.subscribe, session.live.get);
  return (
    <span role="status" className={`live ${live}`}>
      {LIVE_TEXT[live]}
    </span>
  );
}

function SignIn({ sso, onSignedIn }: { sso: boolean; onSignedIn: (signedIn: SignedIn) => void }) {
  const [token, setToken] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const typed = token.trim();
    if (!typed) return;
    setBusy(true);
    setProblem(null);
    try {
      const answer = await whoIs(typed, VIEWER_QUERY, 'ConsoleViewer');
      const viewer: Viewer | undefined = answer.data?.viewer;
      if (!viewer) {
        const code = answer.errors?.[0]?.extensions?.code ?? (answer.status === 429 ? 'RATE_LIMITED' : 'UNKNOWN');
        setProblem(
          code === 'UNAUTHENTICATED'
            ? 'That token is not valid: it may be mistyped, revoked or expired.'
            : describe({ code, message: answer.errors?.[0]?.message ?? `HTTP ${answer.status}` }),
        );
        return;
      }
      if (viewer.role === 'RUNTIME') {
        setProblem('That is a pipeline runtime token: runtime tokens cannot sign in to the console. Use an admin token.');
        return;
      }
      setToken('');
      onSignedIn({ viewer, session: viewer.role === 'ADMIN' ? openSession(typed) : null, sso: false });
    } catch (error) {
      setProblem(describe({ code: 'NETWORK', message: error instanceof Error ? error.message : String(error) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="sign-in">
      <h1>Sign in to strongroom</h1>
      {sso && (
        <p>
          <a className="button primary" href="/auth/login">
            Sign in with single sign-on
          </a>
        </p>
      )}
      <p>
        {sso ? 'Or paste' : 'Paste'} an API token. It is kept in this tab's memory only: a reload asks for it
        again.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          className="masked"
          type="text"
          autoComplete="off"
          spellCheck={false}
          autoCapitalize="off"
          autoFocus
          value={token}
          onChange={(event) => setToken(event.target.value)}
        />
        <button type="submit" disabled={busy || !token.trim()}>
          Sign in
        </button>
      </form>
      {problem && (
        <p role="alert" className="problem">
          {problem}
        </p>
      )}
      {!sso && <p className="hint">Single sign-on is not configured on this server.</p>}
    </main>
  );
}
