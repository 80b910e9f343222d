import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../paths.ts';

/** What this service calls itself in telemetry (resource attributes, log envelope). */
export const SERVICE_NAME = 'tasker-lifecycle';
export const SERVICE_VERSION: string = (
  JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }
).version;
