/** Injection token of the composed conductor (compose-conductor.ts), which the Nest modules hand out. */
export const CONDUCTOR = Symbol('CONDUCTOR');
