/**
 * Passwords never reach a terminal or a log. Connection strings are shown with their password
 * replaced, including malformed ones (`postgres//user:secret@host/db`), whose shape a URL parser
 * would reject: anything of the form `user:password@` loses the password.
 */
const CREDENTIALS = /([A-Za-z0-9._~%!$&'()*+,;=-]+):([^@\s/]*)@/g;

export function redactCredentials(text: string): string {
  return text.replace(CREDENTIALS, (_match, user: string, password: string) =>
    password === '' ? `${user}:@` : `${user}:***@`,
  );
}
