// The signed-in admin's console: the list or a secret's detail, kept live by two
// subscriptions over one WebSocket (any change refetches what is on screen, coalesced).
import { useCallback, useEffect, useRef } from 'react';
import { useApolloClient, useSubscription } from '@apollo/client/react';
import { DEPENDENT_EVENTS, SECRET_EVENTS } from './api';
import { useRoute } from './router';
import { SecretsList } from './SecretsList';
import { SecretDetailView } from './SecretDetail';

// How long a burst of events may run before the screen refetches (one request per burst).
const COALESCE_MS = 200;

export function Console() {
  const route = useRoute();
  useLiveRefresh();
  return route.view === 'secret' ? (
    <SecretDetailView key={route.name} name={route.name} />
  ) : (
    <SecretsList />
  );
}

function useLiveRefresh() {
  const client = useApolloClient();
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refresh = useCallback(() => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      void client.refetchQueries({ include: 'active' }).catch(() => undefined);
    }, COALESCE_MS);
  }, [client]);
  useEffect(() => () => clearTimeout(timer.current), []);
  useSubscription(SECRET_EVENTS, { onData: refresh });
  useSubscription(DEPENDENT_EVENTS, { onData: refresh });
}
