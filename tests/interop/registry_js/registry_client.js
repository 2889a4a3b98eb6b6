// Drives a schema registry with the JavaScript client @kafkajs/confluent-schema-registry.
//
// usage: node registry_client.js REGISTRY_URL SUBJECT
//
// Registers two compatible versions of a record under SUBJECT, tries an incompatible third, reads
// schemas back by id and by subject, and encodes/decodes one message in the Confluent wire format.
// Prints one JSON object on stdout for the Python test to check (ids, versions, the encoded bytes
// in hex); exits non-zero, with the error on stderr, when the client itself fails.
'use strict';

const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');

const V1 = {
  type: 'record',
  name: 'Reading',
  namespace: 'io.thermocline.js',
  fields: [
    { name: 'device_id', type: 'string' },
    { name: 'temperature', type: 'double' },
  ],
};
const V2 = {
  ...V1,
  fields: [...V1.fields, { name: 'battery', type: ['null', 'int'], default: null }],
};
const INCOMPATIBLE = {
  ...V1,
  fields: [{ name: 'device_id', type: 'string' }, { name: 'temperature', type: 'string' }],
};

async function main() {
  const [url, subject] = process.argv.slice(2);
  if (!url || !subject) throw new Error('usage: node registry_client.js REGISTRY_URL SUBJECT');
  const registry = new SchemaRegistry({ host: url, retry: { retries: 0 } });
  const out = { subject };

  const first = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(V1) },
    { subject },
  );
  out.id1 = first.id;
  // Same schema again, with different whitespace: same id.
  const again = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(V1, null, 2) },
    { subject },
  );
  out.id1_again = again.id;
  const second = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(V2) },
    { subject },
  );
  out.id2 = second.id;

  try {
    await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(INCOMPATIBLE) }, { subject });
    out.incompatible_status = 200;
  } catch (e) {
    out.incompatible_status = e.status;
    out.incompatible_message = e.message;
  }

  out.latest_id = await registry.getLatestSchemaId(subject);
  out.version1_id = await registry.getRegistryId(subject, 1);
  out.by_schema_id = await registry.getRegistryIdBySchema(subject, {
    type: SchemaType.AVRO,
    schema: JSON.stringify(V1),
  });

  const reading = { device_id: 'sensor-0042', temperature: 21.5, battery: 87 };
  const encoded = await registry.encode(second.id, reading);
  out.encoded_hex = encoded.toString('hex');
  // A fresh client must fetch the writer's schema by id to decode.
  const fresh = new SchemaRegistry({ host: url, retry: { retries: 0 } });
  out.decoded = await fresh.decode(encoded);
  const schema = await fresh.getSchema(first.id);
  out.schema1_name = schema.name;

  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`registry_client.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
