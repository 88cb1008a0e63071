#!/usr/bin/env node
// Entry point of the `rolesync` command; everything else is in cli.ts.
import { main } from "./cli.ts";

process.exit(await main(process.argv.slice(2)));
