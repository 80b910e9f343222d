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

function allowed(node: Node): string {
  if (node.enum) return node.enum.map((v) => `\`${JSON.stringify(v)}\``).join(', ');
  if (node.type === 'integer') {
    if (node.minimum === undefined && node.maximum === undefined) return 'see description';
    return `${node.minimum ?? ''}–${node.maximum ?? ''}`;
  }
  if (node.type === 'boolean') return 'true, false';
  if (node.type === 'string') return node.pattern ? `\`${node.pattern}\`` : 'text';
  return '';
}

function escapePipes(text: string): string {
  return text.replaceAll('|', '\\|');
}

if (process.argv[1]?.endsWith('reference.ts')) process.stdout.write(configReference());
