export * from './reason-codes';
export * from './conductor-error';
export * from './ids';
