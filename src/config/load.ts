import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { closestName } from '../domain/names.ts';
import { ConfigError } from '../errors.ts';
import { defaultConfigDir, projectRoot } from '../paths.ts';
import { redactCredentials } from '../redact.ts';
import { bound } from './reference.ts';
import { type Config, ConfigSchema } from './schema.ts';

/**
 * Loads the configuration once, at start:
 *   1. config/base.toml (every key, upstream's defaults);
 *   2. config/environments/<TASKER_ENV>.toml (default environment: development);
 *   3. environment variables: DATABASE_URL, DATABASE_DIRECT_URL, DATABASE_REPLICA_URL, and TASKER__<section>__<key>[__<key>] for any key
 *      (the value is read as a TOML value, so 50, true and "text" keep their types).
 * Later layers override earlier ones key by key. The result is validated by ConfigSchema and
 * deep-frozen; every problem is reported at once, naming the dotted key, the value, where it was
 * set and what is allowed.
 */

export const ENVIRONMENTS = ['test', 'development', 'production'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

export interface LoadConfigOptions {
  /** Directory holding base.toml and environments/; default: TASKER_CONFIG_DIR, else <root>/config. */
  configDir?: string;
  /** Environment variables to read; default process.env. */
  env?: Record<string, string | undefined>;
}

export interface LoadedConfig {
  readonly config: Readonly<Config>;
  readonly environment: Environment;
  /** Where each dotted key that was set came from (file path or environment variable). */
  readonly sources: ReadonlyMap<string, string>;
}

type Tree = { [key: string]: unknown };

const ENV_PREFIX = 'TASKER__';

export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const configDir = options.configDir ?? env.TASKER_CONFIG_DIR ?? defaultConfigDir;
  const environment = readEnvironment(env.TASKER_ENV, configDir);
  const problems: string[] = [];
  const sources = new Map<string, string>();
  const merged: Tree = {};

  const layer = (tree: Tree, source: string) => mergeInto(merged, tree, '', source, sources);

  const baseFile = join(configDir, 'base.toml');
  if (!existsSync(baseFile))
    throw new ConfigError([`${displayPath(baseFile)} is missing: it holds every key's default`]);
  const base = readToml(baseFile, problems);
  if (base) layer(base, displayPath(baseFile));

  const envFile = join(configDir, 'environments', `${environment}.toml`);
  if (existsSync(envFile)) {
    const overrides = readToml(envFile, problems);
    if (overrides) layer(overrides, displayPath(envFile));
  }

  for (const { path, value, variable } of readEnvOverrides(env, problems)) {
    // A table (TASKER__archive='{ retention_days = 7 }') sets its keys, not the whole section.
    if (isTree(value)) mergeInto(treeAt(merged, path), value, path.join('.'), variable, sources);
    else {
      setAt(merged, path, value);
      sources.set(path.join('.'), variable);
    }
  }

  // Validate even when a file could not be read, so that one report names every problem; keys
  // that are only missing are then left out, since the unreadable file may well have set them.
  const result = ConfigSchema.safeParse(merged, { reportInput: true });
  if (!result.success) {
    const described = describeIssues(result.error.issues, merged, sources, {
      skipMissing: problems.length > 0,
    });
    throw new ConfigError([...problems, ...described]);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: deepFreeze(result.data), environment, sources };
}

function readEnvironment(value: string | undefined, configDir: string): Environment {
  if (value === undefined || value === '') return 'development';
  if ((ENVIRONMENTS as readonly string[]).includes(value)) return value as Environment;
  const dir = join(configDir, 'environments');
  const present = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.toml')) : [];
  throw new ConfigError([
    `TASKER_ENV = ${JSON.stringify(value)}: expected one of ${ENVIRONMENTS.join(', ')} (files in ${displayPath(dir)}: ${present.join(', ') || 'none'})`,
  ]);
}

function readToml(file: string, problems: string[]): Tree | undefined {
  try {
    return parseToml(readFileSync(file, 'utf8')) as Tree;
  } catch (err) {
    problems.push(`${displayPath(file)}${tomlPosition(err)} is not valid TOML: ${tomlReason(err)}`);
    return undefined;
  }
}

function tomlPosition(err: unknown): string {
  const { line, column } = err as { line?: number; column?: number };
  return typeof line === 'number' && typeof column === 'number' ? `:${line}:${column}` : '';
}

/** smol-toml's message without its "Invalid TOML document:" prefix and the code excerpt under it. */
function tomlReason(err: unknown): string {
  return String((err as Error).message)
    .split('\n')[0]!
    .replace(/^Invalid TOML document:\s*/, '');
}

interface EnvOverride {
  path: string[];
  value: unknown;
  variable: string;
}

function readEnvOverrides(env: Record<string, string | undefined>, problems: string[]): EnvOverride[] {
  const overrides: EnvOverride[] = [];
  if (env.DATABASE_URL !== undefined && env.DATABASE_URL !== '') {
    overrides.push({ path: ['database', 'url'], value: env.DATABASE_URL, variable: 'DATABASE_URL' });
  }
  if (env.DATABASE_DIRECT_URL !== undefined && env.DATABASE_DIRECT_URL !== '') {
    overrides.push({
      path: ['database', 'direct_url'],
      value: env.DATABASE_DIRECT_URL,
      variable: 'DATABASE_DIRECT_URL',
    });
  }
  if (env.DATABASE_REPLICA_URL !== undefined && env.DATABASE_REPLICA_URL !== '') {
    overrides.push({
      path: ['database', 'replica_url'],
      value: env.DATABASE_REPLICA_URL,
      variable: 'DATABASE_REPLICA_URL',
    });
  }
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).toLowerCase().split('__');
    if (path.some((p) => p === '')) {
      problems.push(
        `${name}: expected TASKER__<section>__<key>, e.g. TASKER__staleness_detection__batch_size=50`,
      );
      continue;
    }
    try {
      overrides.push({ path, value: parseEnvValue(raw), variable: name });
    } catch (err) {
      problems.push(`${name}: not a valid TOML table or array: ${tomlReason(err)}`);
    }
  }
  return overrides;
}

/**
 * A value from the environment read as a TOML value (50, true, "x", [1, 2], { key = 1 });
 * otherwise as text. Something meant as a table or an array that does not parse is an error.
 */
function parseEnvValue(raw: string): unknown {
  try {
    return (parseToml(`v = ${raw}`) as Tree).v;
  } catch (err) {
    if (/^\s*[[{]/.test(raw)) throw err;
    return raw;
  }
}

/** The table at path, created where missing. */
function treeAt(tree: Tree, path: readonly string[]): Tree {
  let node = tree;
  for (const key of path) {
    if (!isTree(node[key])) node[key] = {};
    node = node[key] as Tree;
  }
  return node;
}

function setAt(tree: Tree, path: readonly string[], value: unknown) {
  let node = tree;
  for (const key of path.slice(0, -1)) {
    if (!isTree(node[key])) node[key] = {};
    node = node[key] as Tree;
  }
  node[path.at(-1)!] = value;
}

function mergeInto(target: Tree, source: Tree, prefix: string, origin: string, sources: Map<string, string>) {
  for (const [key, value] of Object.entries(source)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isTree(value)) {
      if (!isTree(target[key])) target[key] = {};
      mergeInto(target[key] as Tree, value, path, origin, sources);
    } else {
      target[key] = value;
      sources.set(path, origin);
    }
  }
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function displayPath(file: string): string {
  const rel = relative(projectRoot, file);
  return rel.startsWith('..') ? file : rel;
}

// --- problem messages ---------------------------------------------------------------------------

const jsonSchema = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  minLength?: number;
}

function describeIssues(
  issues: readonly z.core.$ZodIssue[],
  merged: Tree,
  sources: ReadonlyMap<string, string>,
  options: { skipMissing: boolean },
): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const path = issue.path.map(String);
    if (options.skipMissing && issue.code !== 'unrecognized_keys' && valueAt(merged, path) === undefined)
      continue;
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const full = [...path, key].join('.');
        const known = Object.keys(schemaAt(path)?.properties ?? {});
        const hint = closestName(key, known);
        out.push(
          `${full}${from(full, sources)}: unknown key${hint ? `; did you mean ${[...path, hint].join('.')}?` : ''} (known keys here: ${known.join(', ')})`,
        );
      }
      continue;
    }
    const dotted = path.join('.');
    const value = valueAt(merged, path);
    // The schema's own messages start with "expected" and say why (the cron rule, the pattern);
    // zod's generic ones are replaced by a description of the allowed values.
    const allowed =
      issue.message.startsWith('expected') || issue.code === 'custom'
        ? issue.message
        : describeAllowed(schemaAt(path));
    const shown = isTree(value) ? '' : ` = ${formatValue(value)}`;
    out.push(`${dotted}${shown}${from(dotted, sources)}: ${allowed}`);
  }
  return out;
}

/** Where a key was set; for a table, where its first key was set. */
function from(path: string, sources: ReadonlyMap<string, string>): string {
  let source = sources.get(path);
  if (!source) {
    for (const [key, origin] of sources) {
      if (key.startsWith(`${path}.`)) {
        source = origin;
        break;
      }
    }
  }
  return source ? ` (from ${source})` : '';
}

function schemaAt(path: readonly string[]): JsonSchema | undefined {
  let node: JsonSchema | undefined = jsonSchema;
  for (const key of path) node = node?.properties?.[key];
  return node;
}

function valueAt(tree: Tree, path: readonly string[]): unknown {
  let node: unknown = tree;
  for (const key of path) node = isTree(node) ? node[key] : undefined;
  return node;
}

function describeAllowed(schema: JsonSchema | undefined): string {
  if (!schema) return 'not allowed here';
  if (schema.enum) return `expected one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  switch (schema.type) {
    case 'integer':
      return `expected a whole number from ${bound(schema.minimum) ?? '-∞'} to ${bound(schema.maximum) ?? '∞'}`;
    case 'number':
      return `expected a number from ${bound(schema.minimum) ?? '-∞'} to ${bound(schema.maximum) ?? '∞'}`;
    case 'boolean':
      return 'expected true or false';
    case 'string':
      return schema.pattern ? `expected text matching ${schema.pattern}` : 'expected text';
    case 'object':
      return `expected a table with keys ${Object.keys(schema.properties ?? {}).join(', ')}`;
    default:
      return 'not an allowed value';
  }
}

function formatValue(value: unknown): string {
  return value === undefined ? '(missing)' : redactCredentials(JSON.stringify(value));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
