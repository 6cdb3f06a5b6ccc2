// Two views: the list (/console/) and a secret's detail (/console/secrets/NAME). A few lines
// over the History API instead of a router library; the server answers any such path with
// the page (deep links).
import { useEffect, useState } from 'react';

const BASE = '/console';

export type Route = { view: 'list' } | { view: 'secret'; name: string };

function parse(path: string): Route {
  const match = /^\/console\/secrets\/([^/]+)\/?$/.exec(path);
  return match ? { view: 'secret', name: decodeURIComponent(match[1]) } : { view: 'list' };
}

export function pathOf(route: Route): string {
  return route.view === 'secret' ? `${BASE}/secrets/${encodeURIComponent(route.name)}` : `${BASE}/`;
}

export function navigate(route: Route) {
  window.history.pushState(null, '', pathOf(route));
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(window.location.pathname));
  useEffect(() => {
    const changed = () => setRoute(parse(window.location.pathname));
    window.addEventListener('popstate', changed);
    return () => window.removeEventListener('popstate', changed);
  }, []);
  return route;
}
