/** Injection tokens of the admin module (the classes themselves are tokens for the rest). */
export const STATUS_PAGE = Symbol('STATUS_PAGE');
