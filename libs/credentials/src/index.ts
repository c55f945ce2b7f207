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
  readTlsFiles,
  tlsFile,
  type CertificateAndKey,
  type TlsFileSettings,
  type TlsFileSetting,
} from './tls-files';
