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

  // Nothing GraphiQL keeps (tabs with their query text, variables, headers and responses;
  // history; favourites) outlives the page: queries and variables may carry values, and
  // headers carry tokens. Its storage is this in-memory map, never localStorage: a
  // reload starts again from the default tab.
  var kept = new Map();
  var storage = {
    getItem: function (key) {
      return kept.has(key) ? kept.get(key) : null;
    },
    setItem: function (key, value) {
      kept.set(key, String(value));
    },
    removeItem: function (key) {
      kept.delete(key);
    },
    clear: function () {
      kept.clear();
    },
    get length() {
      return kept.size;
    },
  };

  // The browser itself keeps what form controls hold in its session history, to refill
  // them on Back or after a restart, and it writes that to disk (Chromium's Sessions
  // files). The editors type through hidden textareas, so that would keep queries,
  // variables and the pasted token. A control with autocomplete off is not kept: every
  // one of the page's gets it, as GraphiQL adds them.
  function keepOut(node) {
    if (node.nodeType !== 1) return;
    var controls = node.matches('textarea, input') ? [node] : [];
    node.querySelectorAll('textarea, input').forEach(function (control) {
      controls.push(control);
    });
    controls.forEach(function (control) {
      control.setAttribute('autocomplete', 'off');
    });
  }
  var root = document.getElementById('graphiql');
  new MutationObserver(function (changes) {
    changes.forEach(function (change) {
      change.addedNodes.forEach(keepOut);
    });
  }).observe(root, { childList: true, subtree: true });

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      // `headers` fills the open tab on every load; `defaultHeaders` fills new tabs.
      headers: headers,
      defaultHeaders: headers,
      defaultQuery: query,
      // Tokens are credentials: not even kept in the in-memory storage.
      shouldPersistHeaders: false,
      showPersistHeadersSettings: false,
      storage: storage,
      defaultEditorToolsVisibility: 'headers',
    })
  );
})();
