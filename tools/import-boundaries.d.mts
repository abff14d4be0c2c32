import type { Linter } from 'eslint';

export declare const refresherFolders: Record<string, { may: string[]; why: string }>;
export declare const testOnlyExceptions: string[];
export declare function importBoundaries(): Linter.Config[];
