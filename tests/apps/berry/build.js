// The build step: imports a devDependency and writes what the server shows.
import { mkdirSync, writeFileSync } from "node:fs";
import isNumber from "is-number";

mkdirSync("dist", { recursive: true });
writeFileSync("dist/built.txt", `built with is-number: ${isNumber(7)}`);
