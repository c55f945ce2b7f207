export { BrokerConnection } from './broker-connection';
export { type BrokerConnectionOptions, type ReconnectOptions } from './connection-settings';
export {
  type BrokerConnectionEvents,
  type ConnectionState,
  type BlockedView,
  type BrokerEndpointView,
  type LiveModel,
} from './connection-views';
export { type TopologyHealth } from './topology-keeper';
export {
  type BrokerAuth,
  type BrokerTls,
  brokerSocketOptions,
  describeTlsFailure,
  plainEntriesProblem,
} from './broker-tls';
export {
  BrokerRotation,
  BrokerUrlError,
  brokerAddress,
  maskBrokerList,
  parseBrokerUrls,
  type RotationOptions,
} from './broker-urls';
export { consume, Consumer } from './consumer';
export { type ConsumeOptions, type ConsumerState, type DeliveryHandler } from './consume-policy';
export { Delivery, type DeliveryOutcome } from './delivery';
export { declareCellTopology } from './declare-topology';
export {
  BrokerUnavailableError,
  isNotFound,
  MessagingClosedError,
  PublishNotConfirmedError,
  PublishUnroutableError,
  redactUrl,
} from './errors';
export { HEADER_PUBLISH_ID, Publisher, type PublisherOptions, type PublishProperties } from './publisher';
export { ReplyQueue, type ReplyQueueEvents, type ReplyQueueOptions } from './reply-queue';
export {
  MAX_DETAIL_HEADER_LENGTH,
  publishRouted,
  publishToDeadLetter,
  publishToRetry,
  republishProperties,
  type DeadLetterOptions,
  type FailureInfo,
  type RetryOptions,
} from './retry-path';
export { RetryHeaderSigner, type RetryState } from './retry-signature';
export { REQUEUE_PAUSE_MS, handBackOnFailure, type HandBackOptions } from './hand-back-on-failure';
