// What a signed-in member, viewer or inspector sees: that secrets are for admins. It
// queries nothing, so it can show no secret's name.
import type { Viewer } from './api';

const ROLES: [string, string][] = [
  ['Admin', 'Create, update, delete, disable and restore secrets; see who depends on them'],
  ['Member', 'No access to secrets'],
  ['Viewer', 'No access to secrets'],
];

export function NoAccess({ viewer }: { viewer: Viewer }) {
  return (
    <main className="no-access">
      <h1>No access to secrets</h1>
      <p>
        You are signed in as {viewer.principal.name}, a {viewer.role.toLowerCase()} of {viewer.organization.name}. Only
        admins manage secrets; ask one if you need access.
      </p>
      <table aria-label="Who may manage secrets">
        <thead>
          <tr>
            <th scope="col">Role</th>
            <th scope="col">Secrets</th>
          </tr>
        </thead>
        <tbody>
          {ROLES.map(([role, access]) => (
            <tr key={role}>
              <th scope="row">{role}</th>
              <td>{access}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
