export {
  CredentialFileError,
  readPublicFile,
  readSecretBytes,
  readSecretText,
  type CredentialFs,
} from './credential-file';
export {
  readCaBundle,
  readCertificateAndKey,
  type CertificateAndKey,
  type TlsFileSetting,
} from './tls-files';
