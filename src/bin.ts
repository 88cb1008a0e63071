#!/usr/bin/env node
// Entry point of the `rolesync` command; everything else is in cli.ts.
import { main } from "./cli.ts";

const code = await main(process.argv.slice(2));
// Exit once stdout has drained: process.exit() would cut short a large output written to a pipe
// (`rolesync sql | …`, 200 KB), which Node.js writes asynchronously.
process.stdout.write("", () => process.exit(code));
