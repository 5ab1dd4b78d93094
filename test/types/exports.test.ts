// The types the README names come from the main entry, as a user imports them. Checked by
// `npm run typecheck`; the assertions below run too, so the file fails if an export goes.
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { LazyVisitor as ExpressLazyVisitor } from '../../src/adapters/express.js';
import type {
  BinCache,
  LazyVisitor,
  Resolver,
  Storage,
  StoreOption,
  Visitor,
  VisitorState,
  VisitorStateOptions,
} from '../../src/index.js';
import * as main from '../../src/index.js';

describe('the main entry', () => {
  it('exports LazyVisitor, the visitor the framework adapters hand out', () => {
    expectTypeOf<LazyVisitor>().toEqualTypeOf<ExpressLazyVisitor>();
    expectTypeOf<LazyVisitor['cache']>().toEqualTypeOf<BinCache>();
    expectTypeOf<LazyVisitor['resolve']>().returns.resolves.toEqualTypeOf<Visitor>();
  });

  it('exports the types of the options, the stores and the resolvers', () => {
    expectTypeOf<VisitorStateOptions['store']>().toEqualTypeOf<StoreOption | undefined>();
    expectTypeOf<Storage>().toHaveProperty('get');
    expectTypeOf<Resolver>().toHaveProperty('resolve');
    expectTypeOf(main.createVisitorState).returns.toEqualTypeOf<VisitorState>();
  });

  it('exports the error classes the README names', () => {
    for (const name of ['VisitorStateError', 'ConfigError', 'BinError', 'StorageError', 'CookieError', 'ResolverError'])
      expect(main).toHaveProperty(name, expect.any(Function));
  });
});
