import { z } from 'zod';
import { ConfigSchema } from './schema.ts';

/**
 * The configuration reference as a markdown table (README's "Configuration reference"), rendered
 * from the schema itself so the two cannot drift: `npm run docs:config` prints it and a test checks
 * that README.md contains it.
 */

interface Node {
  type?: string;
  description?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
  pattern?: string;
  /** Set in the schema with .meta({ allowed }) where a refinement decides. */
  allowed?: string;
  properties?: Record<string, Node>;
}

export function configReference(): string {
  const root = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as Node;
  const lines = ['| key | default | allowed | what it does |', '| --- | --- | --- | --- |'];
  const walk = (node: Node, path: string[]) => {
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const here = [...path, key];
      if (child.type === 'object' && child.properties) walk(child, here);
      else
        lines.push(
          `| \`${here.join('.')}\` | ${formatDefault(child.default)} | ${allowed(child)} | ${escapePipes(child.description ?? '')} |`,
        );
    }
  };
  walk(root, []);
  return `${lines.join('\n')}\n`;
}

function formatDefault(value: unknown): string {
  return value === undefined ? '' : `\`${JSON.stringify(value)}\``;
}

/**
 * What a key accepts. Constraints JSON Schema cannot express (refinements) carry their own
 * `.meta({ allowed })` in the schema; zod's bounds of a plain int (±2^53-1) are no constraint.
 */
export function allowed(node: Node): string {
  if (node.allowed) return node.allowed;
  if (node.enum) return node.enum.map((v) => `\`${JSON.stringify(v)}\``).join(', ');
  if (node.type === 'integer' || node.type === 'number') {
    const min = bound(node.minimum);
    const max = bound(node.maximum);
    if (min === undefined && max === undefined)
      return node.type === 'integer' ? 'any whole number' : 'any number';
    if (max === undefined) return `${min} or more`;
    if (min === undefined) return `up to ${max}`;
    return `${min}–${max}`;
  }
  if (node.type === 'boolean') return 'true, false';
  if (node.type === 'string') return node.pattern ? `\`${node.pattern}\`` : 'text';
  return '';
}

/** A schema bound, or undefined where there is none (zod gives every int ±(2^53-1)). */
export function bound(value: number | undefined): number | undefined {
  return value === undefined || Math.abs(value) >= Number.MAX_SAFE_INTEGER ? undefined : value;
}

function escapePipes(text: string): string {
  return text.replaceAll('|', '\\|');
}

if (process.argv[1]?.endsWith('reference.ts')) process.stdout.write(configReference());
