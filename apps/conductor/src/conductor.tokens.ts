/** Injection tokens for the plain classes the conductor module wires. */
export const CONDUCTOR_CONFIG = Symbol('CONDUCTOR_CONFIG');
export const ROOT_LOGGER = Symbol('ROOT_LOGGER');
export const CELL_TOPOLOGY = Symbol('CELL_TOPOLOGY');
export const SHUTDOWN_CONTROLLER = Symbol('SHUTDOWN_CONTROLLER');
/** The cell's header key (CACHE_ROOT/.icc-header-key) as read at start: retry signatures and the mount check. */
export const HEADER_KEY = Symbol('HEADER_KEY');
