#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { ConfigError, configWarnings, loadConfig, type Config } from "./config/index.js";
import { ConsulAclError, ConsulUnavailableError } from "./consul/errors.js";
import { EXIT, ExitError } from "./exit-codes.js";
import { VERSION } from "./version.js";

// Each verb loads what it needs when it runs (issue #16: footprint): `validate` and `version`
// never load the AWS SDK, Consul client, pino or the agent.
const agentModule = () => import("./agent.js");
const operatorModule = () => import("./commands/operator.js");
const reloadModule = () => import("./commands/reload.js");
const validateAwsModule = () => import("./commands/validate-aws.js");
const logModule = () => import("./observe/log.js");

/** A validated config's warnings, one line each: `warning: FILE:LINE: PATH: MESSAGE`. */
function warningLines(config: Config): string[] {
  return configWarnings(config).map((w) => `warning: ${config.source}${w.line ? `:${w.line}` : ""}: ${w.path}: ${w.message}`);
}

/** Builds the command line. Exported for tests; `main()` runs it. */
export function buildCli(): Command {
  const program = new Command("routeleader")
    .description("Highly available NAT and service routes for AWS VPCs, elected through Consul session locks")
    .version(VERSION, "-V, --version")
    .showHelpAfterError()
    .exitOverride();

  const configOption = () => new Option("-c, --config <file>", "configuration file (YAML)").makeOptionMandatory();
  const logLevel = () => new Option("--log-level <level>", "override logLevel").choices(["trace", "debug", "info", "warn", "error"]);

  program
    .command("validate")
    .description("validate a configuration file and print what is wrong")
    .addOption(configOption())
    .option("--aws", "also check the routes' Elastic IPs and fallbacks against AWS (reads only; the VPC comes from instance metadata)")
    .action(async (opts: { config: string; aws?: boolean }) => {
      const config = loadConfig(opts.config);
      for (const line of warningLines(config)) process.stderr.write(`${line}\n`);
      const checked = opts.aws ? await (await validateAwsModule()).validateAgainstAws(config) : 0;
      if (checked) process.stdout.write(`${opts.config}: Elastic IPs and fallbacks of ${checked} route${checked === 1 ? "" : "s"} checked against AWS\n`);
      process.stdout.write(`${opts.config}: valid (cluster ${config.cluster}, ${config.routes.length} route${config.routes.length === 1 ? "" : "s"}, ${Object.keys(config.checks).length} check${Object.keys(config.checks).length === 1 ? "" : "s"})\n`);
    });

  program
    .command("run")
    .description("run the agent: contend for routes, hold them while healthy")
    .addOption(configOption())
    .addOption(logLevel())
    .option("--dry-run", "log every intended route write and send none")
    .action(async (opts: { config: string; logLevel?: string; dryRun?: boolean }) => {
      const config = loadConfig(opts.config);
      const [{ createLogger }, { runAgent }] = await Promise.all([logModule(), agentModule()]);
      const log = createLogger(opts.logLevel ?? config.logLevel);
      for (const w of configWarnings(config)) log.warn({ step: "config", path: w.path, line: w.line }, `config warning: ${w.message}`);
      await runAgent(config, { log, dryRun: opts.dryRun ?? false, once: false, logLevelFixed: opts.logLevel !== undefined });
    });

  program
    .command("once")
    .description("one claim pass: contend, write the routes this node wins, release, exit")
    .addOption(configOption())
    .addOption(logLevel())
    .option("--dry-run", "log every intended route write and send none")
    .action(async (opts: { config: string; logLevel?: string; dryRun?: boolean }) => {
      const config = loadConfig(opts.config);
      const [{ createLogger }, { runAgent }] = await Promise.all([logModule(), agentModule()]);
      const log = createLogger(opts.logLevel ?? config.logLevel);
      for (const w of configWarnings(config)) log.warn({ step: "config", path: w.path, line: w.line }, `config warning: ${w.message}`);
      await runAgent(config, { log, dryRun: opts.dryRun ?? false, once: true });
    });

  program
    .command("status")
    .description("routes, their holders in Consul and their actual targets in EC2; DRIFT where they disagree (exit 7)")
    .addOption(configOption())
    .option("--json", "print JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      const config = loadConfig(opts.config);
      const [{ createLogger }, { printStatus }] = await Promise.all([logModule(), operatorModule()]);
      const code = await printStatus(config, createLogger("warn", { pretty: false, destination: process.stderr }), opts.json ?? false);
      if (code !== EXIT.ok) throw new ExitError("drift between Consul and the route tables (see DRIFT above)", code);
    });

  for (const action of ["drain", "undrain"] as const) {
    program
      .command(action)
      .description(action === "drain" ? "release every route this node holds and stop contending (until undrain or restart)" : "contend for routes again after a drain")
      .addOption(configOption())
      .action(async (opts: { config: string }) => {
        const config = loadConfig(opts.config);
        const { postToAgent } = await operatorModule();
        process.stdout.write(`${await postToAgent(config, action)}\n`);
      });
  }

  program
    .command("reload")
    .description("make the running agent re-read its configuration file (as SIGHUP does); a file that does not validate, or changes a setting that cannot change live, is refused and the agent keeps its configuration")
    .addOption(configOption())
    .option("--json", "print the agent's answer as JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      const { renderReload, requestReload } = await reloadModule();
      const answer = await requestReload(opts.config);
      if (opts.json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
      else process.stdout.write(`${renderReload(answer)}\n`);
      if (answer.outcome === "refused") throw new ExitError(`reload refused by the agent; it keeps running on its configuration\n${answer.problems ?? answer.message}`, EXIT.config);
    });

  program
    .command("handover")
    .description("move a route away from its holder now (to INSTANCE if given); waits for the new holder")
    .argument("<route>", "route name")
    .addOption(configOption())
    .option("--to <instance>", "instance id that should take the route")
    .action(async (route: string, opts: { config: string; to?: string }) => {
      const config = loadConfig(opts.config);
      const { requestHandover } = await operatorModule();
      const result = await requestHandover(config, route, opts.to);
      process.stdout.write(`${route}: ${result.from ?? "nobody"} → ${result.to ?? "nobody"} in ${result.ms} ms\n`);
    });

  program
    .command("version")
    .description("print the version")
    .action(() => {
      process.stdout.write(`routeleader ${VERSION}\n`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; everything else commander rejects is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`routeleader: invalid configuration\n${err.message}\n`);
      return EXIT.config;
    }
    if (err instanceof ExitError) {
      process.stderr.write(`routeleader: ${err.message}\n`);
      return err.exitCode;
    }
    // Whatever step met it, Consul not answering (unreachable, or a cluster without a leader:
    // requests hang until Consul gives up) or refusing the token is exit 5, as README's table says.
    if (err instanceof ConsulUnavailableError) {
      process.stderr.write(`routeleader: Consul did not answer (unreachable, or its cluster has no leader): ${err.message}\n`);
      return EXIT.consul;
    }
    if (err instanceof ConsulAclError) {
      process.stderr.write(`routeleader: Consul refused the ACL token: ${err.message}\n`);
      return EXIT.consul;
    }
    process.stderr.write(`routeleader: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.failure;
  }
}

const invokedDirectly = process.argv[1] && /cli\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly) {
  // Exit explicitly: SDK and metadata clients may keep idle keep-alive sockets open, and a
  // stopped agent must not linger after it has released its routes and deregistered.
  main(process.argv).then((code) => process.exit(code));
}
