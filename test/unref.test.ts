import { describe, expect, it } from 'vitest';
import { unref } from '../src/unref.js';

describe('unref', () => {
  it('lets a Node timer go without holding the process', () => {
    const timer = unref(setInterval(() => {}, 60_000));
    try {
      expect(timer.hasRef()).toBe(false);
    } finally {
      clearInterval(timer);
    }
  });

  it('leaves a timer that is a number, as workerd returns, as it is', () => {
    expect(unref(42)).toBe(42);
  });
});
