/**
 * README.md stays true where it can be checked mechanically: its configuration reference is the
 * one rendered from the schema, and every CLI command is documented.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from '@jest/globals';
import { COMMANDS } from '../../src/cli/main.ts';
import { configReference } from '../../src/config/reference.ts';
import { projectRoot } from '../../src/paths.ts';

const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');

it('contains the configuration reference rendered from the schema (npm run docs:config)', () => {
  expect(readme).toContain(configReference());
});

it('the configuration reference names what every key accepts, with no zod placeholder bounds', () => {
  const rows = configReference().trim().split('\n').slice(2);
  expect(rows.length).toBeGreaterThan(50);
  for (const row of rows) {
    const [, key, , allowedValues] = row.split(/(?<!\\)\|/).map((c) => c.trim());
    expect({ key, allowed: allowedValues }).toEqual({ key, allowed: expect.stringMatching(/\S/) });
    expect(row).not.toContain(String(Number.MAX_SAFE_INTEGER));
  }
});

it.each(COMMANDS.map((c) => [c.name]))('documents the command `%s`', (name) => {
  expect(readme).toContain(`tasker-lifecycle ${name}`);
});
