// One Apollo Client per sign-in: queries and mutations over HTTP POST to /graphql,
// subscriptions over one WebSocket to /graphql/ws. A pasted token lives in this closure and
// in React state only: no storage; the cache is Apollo's in-memory one and is dropped with
// the client at sign-out (or a reload). Signed in with single sign-on there is no token
// here at all: the browser sends the server's HttpOnly session cookie, which no script
// can read.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';

/// Whether the WebSocket that carries the live updates is up.
export type Live = 'connecting' | 'live' | 'offline';

export interface Session {
  client: ApolloClient;
  live: { get: () => Live; subscribe: (listener: () => void) => () => void };
  close: () => void;
}

/// `token` null: the session cookie authenticates (single sign-on).
export function openSession(token: string | null): Session {
  const authorization = token ? `Bearer ${token}` : null;
  let live: Live = 'connecting';
  const listeners = new Set<() => void>();
  const set = (now: Live) => {
    live = now;
    listeners.forEach((listener) => listener());
  };
  const http = new HttpLink({
    uri: '/graphql',
    headers: authorization ? { authorization } : {},
    credentials: 'same-origin',
  });
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = createClient({
    url: `${scheme}//${window.location.host}/graphql/ws`,
    // The server reads a subscription's token from connection_init (or, without one, the
    // upgrade's session cookie).
    connectionParams: authorization ? { Authorization: authorization } : {},
    // Both subscriptions share this one socket; it closes when neither is active.
    lazy: true,
    retryAttempts: 5,
    on: {
      connecting: () => set('connecting'),
      connected: () => set('live'),
      closed: () => set('offline'),
    },
  });
  const link = ApolloLink.split(
    (operation) => operation.operationType === OperationTypeNode.SUBSCRIPTION,
    new GraphQLWsLink(socket),
    http,
  );
  const client = new ApolloClient({
    link,
    cache: new InMemoryCache(),
    devtools: { enabled: false },
  });
  return {
    client,
    live: {
      get: () => live,
      subscribe: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    close: () => {
      void socket.dispose();
      client.stop();
      void client.clearStore();
    },
  };
}

/// The caller behind `token` (or, null, the session cookie), asked before any client
/// exists: a plain POST.
export async function whoIs(token: string | null, query: string, operationName: string): Promise<{ data?: any; errors?: any[]; status: number }> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/graphql-response+json, application/json',
  };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch('/graphql', {
    method: 'POST',
    headers,
    credentials: 'same-origin',
    body: JSON.stringify({ query, operationName }),
  });
  let body: any = {};
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page, say)
  }
  return { ...body, status: response.status };
}

/// Whether this server offers single sign-on.
export async function ssoOffered(): Promise<boolean> {
  try {
    const response = await fetch('/auth/session', { credentials: 'same-origin' });
    const body = await response.json();
    return body.sso === true;
  } catch {
    return false;
  }
}

/// Ends the single sign-on session (the server revokes it and clears the cookie).
export async function endSsoSession(): Promise<void> {
  await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' });
}
