import { describe, expect, it } from 'vitest';
import { HostlistError, expandHostlist } from '../src/hostlist.js';

describe('expandHostlist (Slurm compressed host lists)', () => {
  const table: [string, string[]][] = [
    ['login1', ['login1']],
    ['gpu[01-04,07],login1', ['gpu01', 'gpu02', 'gpu03', 'gpu04', 'gpu07', 'login1']],
    ['node[8-11]', ['node8', 'node9', 'node10', 'node11']],
    ['n[098-101]', ['n098', 'n099', 'n100', 'n101']],
    ['a,b,c', ['a', 'b', 'c']],
    ['gpu[3]', ['gpu3']],
    ['rack[1-2]-n[01-02]', ['rack1-n01', 'rack1-n02', 'rack2-n01', 'rack2-n02']],
    ['[1-2]x', ['1x', '2x']],
    ['c[1,3],d[5-6]', ['c1', 'c3', 'd5', 'd6']],
    ['host-1.example.org', ['host-1.example.org']],
    [' gpu[1-2] , cpu1 ', ['gpu1', 'gpu2', 'cpu1']],
  ];
  for (const [list, hosts] of table) {
    it(`${JSON.stringify(list)} -> ${hosts.join(' ')}`, () => {
      expect(expandHostlist(list)).toEqual(hosts);
    });
  }

  const bad: [string, RegExp][] = [
    ['gpu[01-04', /"\[" without its "\]"/],
    ['gpu01-04]', /unbalanced brackets at position 8/],
    ['gpu[[1]]', /unbalanced brackets/],
    ['gpu[]', /empty "\[\]"/],
    ['gpu[04-01]', /runs backwards/],
    ['gpu[a-b]', /"a-b" in \[a-b\] is not N or N-M/],
    ['a,,b', /empty host name/],
    ['', /empty host name/],
    ['n[1-999999]', /too large/],
  ];
  for (const [list, message] of bad) {
    it(`rejects ${JSON.stringify(list)} saying ${message.source}`, () => {
      expect(() => expandHostlist(list)).toThrow(HostlistError);
      expect(() => expandHostlist(list)).toThrow(message);
    });
  }
});
