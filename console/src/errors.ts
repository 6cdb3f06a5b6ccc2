// Messages from the API's error codes (`extensions.code`), never from its free text alone:
// the codes are the contract, the server's messages add detail.
import { CombinedGraphQLErrors, ServerError } from '@apollo/client';

export interface Problem {
  code: string;
  message: string;
}

/// The first error's code and the server's message, from whatever Apollo or fetch raised.
export function problemOf(error: unknown): Problem {
  if (CombinedGraphQLErrors.is(error)) {
    const first = error.errors[0];
    const code = first?.extensions?.code;
    return { code: typeof code === 'string' ? code : 'UNKNOWN', message: first?.message ?? '' };
  }
  if (ServerError.is(error)) {
    // A refusal before GraphQL ran (429, 503...) still carries GraphQL's error shape.
    try {
      const body = JSON.parse(error.bodyText);
      const first = body?.errors?.[0];
      if (typeof first?.extensions?.code === 'string') {
        return { code: first.extensions.code, message: first.message ?? '' };
      }
    } catch {
      // not JSON: fall through
    }
    return { code: error.statusCode === 429 ? 'RATE_LIMITED' : 'SERVER_ERROR', message: `HTTP ${error.statusCode}` };
  }
  return { code: 'NETWORK', message: error instanceof Error ? error.message : String(error) };
}

const MESSAGES: Record<string, (name: string) => string> = {
  ALREADY_EXISTS: (name) => `A secret named ${name} already exists.`,
  HAS_DEPENDENTS: (name) => `Deployed pipelines or integrations use ${name}: review the impact and confirm to delete anyway.`,
  SECRET_DISABLED: (name) => `${name} is disabled: enable it first.`,
  VERSION_CONFLICT: (name) => `Someone else changed ${name} since you opened it.`,
  RATE_LIMITED: () => 'Too many requests for now: wait a moment and try again.',
  NOT_FOUND: (name) => `${name} no longer exists: someone may have deleted it.`,
  BAD_USER_INPUT: () => 'The server refused the input:',
  FORBIDDEN: () => 'Your token may not do that.',
  UNAUTHENTICATED: () => 'Your token no longer works: sign out and sign in again.',
  MISSING_SECRETS: () => 'A pipeline references a secret that does not exist.',
  DATABASE_UNAVAILABLE: () => 'The server cannot reach its database right now: try again shortly.',
  OVERLOADED: () => 'The server is busy: try again shortly.',
  NETWORK: () => 'The server could not be reached:',
};

/// What to tell the admin about `problem`, acting on secret `name`.
export function describe(problem: Problem, name = 'the secret'): string {
  const known = MESSAGES[problem.code];
  if (!known) return `Something went wrong (${problem.code}): ${problem.message}`;
  const text = known(name);
  return text.endsWith(':') ? `${text} ${problem.message}` : text;
}
