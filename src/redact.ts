/**
 * Passwords never reach a terminal or a log. Connection strings are shown with their password
 * replaced, including malformed ones (`postgres//user:secret@host/db`), whose shape a URL parser
 * would reject: anything of the form `user:password@` loses the password.
 *
 * What is replaced is what the regular expression
 * `([A-Za-z0-9._~%!$&'()*+,;=-]+):([^@\s/]*)@` (global) would replace, found in one pass: running
 * that expression itself retries the user part from every position of a long run of such
 * characters, which takes time quadratic in the text's length (13 s on 100,000 characters). Here
 * every `@` closes a segment that began after the previous `@`, white space or `/`; within it the
 * first `:` directly after a user character ends the user part, and the rest of the segment is the
 * password. Each character is looked at once.
 */

const USER_CHARS = /[A-Za-z0-9._~%!$&'()*+,;=-]/;
/** What ends a password (and a segment): `@`, white space, `/`. */
const SEGMENT_ENDS = /[@\s/]/;

export function redactCredentials(text: string): string {
  let out = '';
  /** Where the text not yet copied to `out` starts. */
  let copied = 0;
  /** Where the current segment starts (after the last `@`, white space or `/`). */
  let segment = 0;
  /** The first `:` of the segment directly after a user character, or -1. */
  let colon = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '@') {
      if (colon !== -1) {
        // The user part (kept as it is) ends at the colon; the password is the rest of the segment.
        out += `${text.slice(copied, colon)}:${colon + 1 < i ? '***' : ''}@`;
        copied = i + 1;
      }
      segment = i + 1;
      colon = -1;
    } else if (SEGMENT_ENDS.test(c)) {
      segment = i + 1;
      colon = -1;
    } else if (c === ':' && colon === -1 && i > segment && USER_CHARS.test(text[i - 1]!)) {
      colon = i;
    }
  }
  return out + text.slice(copied);
}
