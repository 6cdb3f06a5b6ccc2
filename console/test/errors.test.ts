import { describe as suite, expect, it } from 'vitest';
import { CombinedGraphQLErrors, ServerError } from '@apollo/client';
import { describe, problemOf } from '../src/errors';

suite('messages come from the codes', () => {
  it('reads the first GraphQL error', () => {
    const error = new CombinedGraphQLErrors({
      errors: [{ message: 'secret DB_URL was changed', extensions: { code: 'VERSION_CONFLICT' } }],
    });
    const problem = problemOf(error);
    expect(problem.code).toBe('VERSION_CONFLICT');
    expect(describe(problem, 'DB_URL')).toBe('Someone else changed DB_URL since you opened it.');
  });

  it('reads a refusal made before GraphQL ran', () => {
    const body = JSON.stringify({ errors: [{ message: 'slow down', extensions: { code: 'RATE_LIMITED' } }] });
    const error = new ServerError('429', { response: new Response(body, { status: 429 }), bodyText: body });
    expect(describe(problemOf(error))).toMatch(/Too many requests/);
  });

  it('says so for a code it does not know, with the server message', () => {
    expect(describe({ code: 'SOMETHING_NEW', message: 'details' })).toBe('Something went wrong (SOMETHING_NEW): details');
  });

  it('adds the server message where it is the detail', () => {
    expect(describe({ code: 'BAD_USER_INPUT', message: 'name too long' })).toBe('The server refused the input: name too long');
  });
});
