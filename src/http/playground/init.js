// Starts GraphiQL on strongroom's own endpoints. A file served by the binary rather than an
// inline script: the page's Content-Security-Policy allows scripts from this origin only.
(function () {
  'use strict';

  // GraphiQL's dialogs add a <style> element (react-remove-scroll); it carries this nonce,
  // which the server put in this page's policy and on this script's tag, fresh per visit.
  var script = document.currentScript;
  window.__webpack_nonce__ = script && script.nonce;

  var wsScheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    // GraphiQL sends the Headers tab as graphql-ws's connection_init payload, which is where
    // the server reads the token of a subscription.
    subscriptionUrl: wsScheme + '//' + window.location.host + '/graphql/ws',
  });
  var headers = JSON.stringify({ Authorization: 'Bearer <paste an API token>' }, null, 2);
  var query = [
    '# Paste an API token into the Authorization header (Headers tab, below), then run:',
    '{',
    '  viewer {',
    '    role',
    '    organization { name }',
    '  }',
    '}',
    '',
  ].join('\n');

  // `shouldPersistHeaders: false` keeps the Headers tab out of localStorage, but GraphiQL
  // 4.1.2's history still stores each run's headers (`graphiql:queries`). Headers carry
  // tokens: everything GraphiQL stores passes through here and loses its headers first.
  var storage = {
    getItem: function (key) {
      return window.localStorage.getItem(key);
    },
    setItem: function (key, value) {
      if (key === 'graphiql:headers') return;
      window.localStorage.setItem(key, withoutHeaders(value));
    },
    removeItem: function (key) {
      window.localStorage.removeItem(key);
    },
    clear: function () {
      graphiqlKeys().forEach(function (key) {
        window.localStorage.removeItem(key);
      });
    },
    get length() {
      return graphiqlKeys().length;
    },
  };

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      // `headers` fills the open tab on every load; `defaultHeaders` fills new tabs.
      headers: headers,
      defaultHeaders: headers,
      defaultQuery: query,
      // Tokens are credentials: never written to localStorage.
      shouldPersistHeaders: false,
      showPersistHeadersSettings: false,
      storage: storage,
      defaultEditorToolsVisibility: 'headers',
    })
  );

  function graphiqlKeys() {
    return Object.keys(window.localStorage).filter(function (key) {
      return key.indexOf('graphiql:') === 0;
    });
  }

  // `value` with every `headers` field (tabs, history, favourites) set to null; a value
  // that is not JSON is stored as it is.
  function withoutHeaders(value) {
    var parsed;
    try {
      parsed = JSON.parse(value);
    } catch (_) {
      return value;
    }
    (function scrub(node) {
      if (node === null || typeof node !== 'object') return;
      Object.keys(node).forEach(function (key) {
        if (key === 'headers') node[key] = null;
        else scrub(node[key]);
      });
    })(parsed);
    return JSON.stringify(parsed);
  }
})();
