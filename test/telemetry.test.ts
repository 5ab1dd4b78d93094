import { metrics, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVisitorState, memoryStorage } from '../src/index.js';
import { withTelemetry } from '../src/state/instrumented-storage.js';
import { send, serve, type TestServer } from './helpers/http.js';

const CLIENT_IP = '203.0.113.7';
const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

describe('telemetry without an SDK', () => {
  it('leaves the store as it is: no call pays for instruments nobody reads', async () => {
    const storage = memoryStorage();
    expect(await withTelemetry(storage, 'memory:', 'vs')).toBe(storage);
  });
});

describe('telemetry through OpenTelemetry', () => {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  let server: TestServer;
  let visitors: ReturnType<typeof createVisitorState>;

  beforeAll(async () => {
    // The SDK is registered before the library opens its store, as an application's instrumentation does.
    metrics.setGlobalMeterProvider(meterProvider);
    trace.setGlobalTracerProvider(tracerProvider);
    visitors = createVisitorState({
      secret: 'a test secret that is long enough to be real',
      store: 'memory:',
      trustProxy: ['loopback'],
    });
    await visitors.ready();
    server = await serve(async (req, res) => {
      const visitor = await visitors.resolve(req, res);
      const [city, theme] = await visitor.cache.getMany(['geo:city', 'ui:theme']);
      await visitor.cache.set('geo:city', { name: 'Lyon' });
      res.end(JSON.stringify({ id: visitor.id, before: [city ?? null, theme ?? null] }));
    });
  });

  afterAll(async () => {
    await server?.close();
    await visitors?.close();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
    metrics.disable();
    trace.disable();
  });

  it('records one request that reads two bins and writes one, with no visitor ID, address or User-Agent', async () => {
    const reply = await send(`${server.url}/`, { headers: { 'user-agent': USER_AGENT, 'x-forwarded-for': CLIENT_IP } });
    expect(reply.status).toBe(200);
    const { id } = reply.json<{ id: string }>();

    await reader.forceFlush();
    const found = metricExporter.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics));
    const metric = (name: string): MetricData => {
      const m = found.filter((f) => f.descriptor.name === name).at(-1);
      expect(m, `metric ${name}`).toBeDefined();
      return m as MetricData;
    };
    const points = (name: string) => metric(name).dataPoints as DataPoint<unknown>[];

    // One store call to read both bins, one to write: each measured, in seconds, by store and operation.
    const duration = metric('db.client.operation.duration');
    expect(duration.descriptor.unit).toBe('s');
    const calls = points('db.client.operation.duration').map((p) => ({
      system: p.attributes['db.system.name'],
      operation: p.attributes['db.operation.name'],
      count: (p.value as { count: number }).count,
    }));
    expect(calls).toContainEqual({ system: 'memory', operation: 'getMany', count: 1 });
    expect(calls).toContainEqual({ system: 'memory', operation: 'set', count: 1 });

    const reads = points('visitor_state.bin.reads').map((p) => [p.attributes['visitor_state.bin.result'], p.value]);
    expect(reads).toEqual([['miss', 2]]);
    const writes = points('visitor_state.bin.writes').map((p) => [p.attributes['db.operation.name'], p.value]);
    expect(writes).toEqual([['set', 1]]);
    const resolutions = points('visitor_state.resolutions').map((p) => [p.attributes['visitor_state.source'], p.value]);
    expect(resolutions).toEqual([['new', 1]]);

    const spans = spanExporter.getFinishedSpans();
    const storeSpans = spans.map((s) => [s.name, s.attributes['db.operation.name'], s.attributes['db.system.name']]);
    expect(storeSpans).toContainEqual(['getMany vs', 'getMany', 'memory']);
    expect(storeSpans).toContainEqual(['set vs', 'set', 'memory']);

    // Nothing that identifies the visitor, in any attribute of any point or span.
    const attributeText = JSON.stringify([
      found.flatMap((m) => m.dataPoints.map((p) => p.attributes)),
      spans.map((s) => [s.name, s.attributes, s.events, s.resource.attributes]),
    ]);
    for (const secret of [id, CLIENT_IP, USER_AGENT, 'Chrome', 'Lyon']) expect(attributeText).not.toContain(secret);
  });
});
