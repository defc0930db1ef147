// The release phase: would run migrations; fails on purpose when FAIL_RELEASE is set.
console.log("release phase ran");
if (process.env.FAIL_RELEASE) {
  console.error("migration failed: FAIL_RELEASE is set");
  process.exit(7);
}
