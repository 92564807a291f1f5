import { awsClientOptions, createEc2Client } from "../aws/index.js";
import { classifyAwsError, describeAwsFailure } from "../aws/errors.js";
import { ConfigError, configProblem, type Config } from "../config/index.js";
import { EXIT, ExitError } from "../exit-codes.js";
import { InstanceMetadata } from "../identity/index.js";
import { checkEgressTargets } from "../routes/egress-targets.js";

/**
 * `validate --aws`: the routes' Elastic IPs and fallbacks checked against AWS with reads only
 * (the instance's VPC from instance metadata). Problems throw ConfigError (exit 3) naming the
 * file, line and path; an AWS refusal throws ExitError (exit 6) naming the call.
 */
export async function validateAgainstAws(config: Config): Promise<number> {
  const routes = config.routes.filter((r) => r.eip || r.fallback);
  if (routes.length === 0) return 0;
  const identity = await new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout }).identity();
  const ec2 = createEc2Client({ ...awsClientOptions(config, identity), maxAttempts: 2 });
  try {
    const problems = await checkEgressTargets(ec2, config.cluster, identity.vpcId, config.routes);
    if (problems.length) throw new ConfigError(config.source, problems.map((p) => configProblem(config, p.path, p.message)));
    return routes.length;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const failure = classifyAwsError(err);
    throw new ExitError(describeAwsFailure(failure, "ec2:Describe*", "the routes' Elastic IPs and fallbacks"), EXIT.aws, { cause: err });
  } finally {
    ec2.destroy();
  }
}
