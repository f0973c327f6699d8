/**
 * What a Keap REST hook delivery looks like, from Keap's REST hook documentation (the OpenAPI files do not describe
 * deliveries): `{"event_key", "object_type", "object_keys": [{"id", "apiUrl", "timestamp"}]}`, one to 1,000 objects,
 * `apiUrl` and `timestamp` possibly missing or empty (KEAP.md). Closed like the spec checks: an unknown property is
 * an error, so a sandbox or a receiver test cannot drift into a shape Keap never sends.
 */
import assert from 'node:assert/strict';
import { z } from 'zod';

export const keapHookDeliverySchema = z.strictObject({
  event_key: z.string().regex(/^[a-zA-Z]+(\.[a-z_]+)+$/, 'a noun.verb event key'),
  object_type: z.string().min(1),
  object_keys: z
    .array(
      z.strictObject({
        id: z.number().int().positive(),
        apiUrl: z.string().optional(),
        timestamp: z.union([z.iso.datetime({ offset: true }), z.literal('')]).optional(),
      }),
    )
    .min(1)
    .max(1000),
});

export type KeapHookDelivery = z.infer<typeof keapHookDeliverySchema>;

/** Throws an AssertionError naming every problem when `body` is not a delivery as Keap documents it. */
export function assertKeapHookDelivery(body: unknown): asserts body is KeapHookDelivery {
  const parsed = keapHookDeliverySchema.safeParse(body);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
  assert.deepEqual(problems, [], `not a Keap REST hook delivery: ${JSON.stringify(body)?.slice(0, 400)}`);
}
