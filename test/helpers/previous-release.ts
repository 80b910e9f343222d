import { execFileSync, execSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { projectRoot } from '../../src/paths.ts';

/**
 * The previous release: the build whose workers are still running while this one is deployed
 * (test/e2e/upgrade.test.ts, test/integration/previous-release.test.ts). Move it to the last
 * released commit at each release (the last one that landed on main).
 */
export const PREVIOUS_RELEASE = '7ef2c80896932dc9faa2f3fe707e856bcb3b6af3';

/**
 * The previous release in a temporary directory, from git (the work tree is not touched), with
 * this checkout's node_modules when the lockfiles agree, else its own `npm ci`.
 */
export function extractPreviousRelease(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-previous-release-'));
  execSync(`git archive ${PREVIOUS_RELEASE} | tar -x -C ${JSON.stringify(dir)}`, { cwd: projectRoot });
  const sameLock =
    readFileSync(join(dir, 'package-lock.json'), 'utf8') ===
    readFileSync(join(projectRoot, 'package-lock.json'), 'utf8');
  if (sameLock) symlinkSync(join(projectRoot, 'node_modules'), join(dir, 'node_modules'));
  else execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  return dir;
}

/** The previous release's migrations directory alone (from git), for this build's runner. */
export function previousReleaseMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-previous-migrations-'));
  const git = (...args: string[]) => execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8' });
  for (const path of git('ls-tree', '-r', '--name-only', PREVIOUS_RELEASE, 'migrations/')
    .trim()
    .split('\n')) {
    if (!path.endsWith('.sql')) continue;
    const file = join(dir, path.slice('migrations/'.length));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, git('show', `${PREVIOUS_RELEASE}:${path}`));
  }
  return dir;
}
