// The package entry: the typed client, and the migration runner for apps that migrate at startup.
export {
  syncRoleMemberships,
  syncRoleMembershipsByForeignId,
  withRetry,
  toRolesyncError,
  RolesyncError,
  NullArgumentError,
  InvalidArgumentError,
  UnknownMemberError,
  UnknownGroupError,
  NotAGroupError,
  SelfMembershipError,
  UnmanagedGroupError,
  SerializationError,
  type Queryable,
  type SyncResult,
  type SyncByForeignIdResult,
  type RetryOptions,
} from "./client.ts";
export { runMigrations, MigrationError, type MigrateOptions, type MigrateEvent, type MigrateResult } from "./migrate.ts";
