// topic-relay on ECS Fargate behind an Application Load Balancer: the container twin of
// Momento's webhook Lambda stack. Secrets come from Secrets Manager into the container's
// environment; only the webhooks (and token vending, when on) are routed publicly.
import * as path from 'node:path';
import * as cdk from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as efs from 'aws-cdk-lib/aws-efs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

/** Where each task keeps its spool: events answered 202 wait there until delivered. */
export type SpoolStorage = 'efs' | 'ephemeral';

export interface TopicRelayStackProps extends cdk.StackProps {
  /** ACM certificate for the load balancer's HTTPS listener (Momento calls https only). */
  readonly certificateArn: string;
  /** Secrets Manager secret whose JSON holds TOPIC_RELAY_WEBHOOK_SECRET, MOMENTO_API_KEY and TOPIC_RELAY_ADMIN_TOKEN. */
  readonly secretName?: string;
  /** Momento endpoint for v2 API keys (not a secret); legacy keys carry their own. */
  readonly momentoEndpoint?: string;
  /** `efs` (default): spools outlive tasks. `ephemeral`: a replaced task's spool is lost. */
  readonly spool?: SpoolStorage;
  /** server.drain_delay: readiness is 503 this long before the listener closes. */
  readonly drainDelay?: cdk.Duration;
  /** server.shutdown_grace: requests in flight get this long to finish. */
  readonly shutdownGrace?: cdk.Duration;
  readonly minTasks?: number;
  readonly maxTasks?: number;
  /** Route POST /v1/tokens publicly too, for relays with [tokens]. */
  readonly tokenVending?: boolean;
  /** The relay's config, relative to the repository root; baked into the image. */
  readonly configFile?: string;
}

/** Environment variables the relay's config reads from the secret. */
export const SECRET_KEYS = ['TOPIC_RELAY_WEBHOOK_SECRET', 'MOMENTO_API_KEY', 'TOPIC_RELAY_ADMIN_TOKEN'] as const;

const REPOSITORY_ROOT = path.join(__dirname, '..', '..', '..', '..');
const PORT = 8080;
// The operator's routes (/metrics, /v1/status, /v1/admin/*), which the load balancer never
// reaches: it routes to PORT alone. Reach them from inside the VPC (a Prometheus scraper,
// ECS Exec).
const OPS_PORT = 9090;
const SPOOL_PATH = '/var/lib/topic-relay';
// distroless's nonroot, the image's user.
const RELAY_UID = '65532';

export class TopicRelayStack extends cdk.Stack {
  constructor(scope: Construct, id: string, props: TopicRelayStackProps) {
    super(scope, id, props);
    if (!props.certificateArn) {
      throw new Error('certificateArn is required: pass -c certificateArn=arn:aws:acm:...');
    }
    const drainDelay = props.drainDelay ?? cdk.Duration.seconds(5);
    const shutdownGrace = props.shutdownGrace ?? cdk.Duration.seconds(10);
    const stopping = cdk.Duration.seconds(drainDelay.toSeconds() + shutdownGrace.toSeconds());
    const minTasks = props.minTasks ?? 2;
    const maxTasks = props.maxTasks ?? 10;
    const spool = props.spool ?? 'efs';

    // Tasks in private subnets reach Momento through one NAT gateway.
    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const cluster = new ecs.Cluster(this, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });

    const task = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: 512,
      memoryLimitMiB: 1024,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    const secret = secretsmanager.Secret.fromSecretNameV2(this, 'Secret', props.secretName ?? 'topic-relay');
    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });

    const environment: Record<string, string> = {
      MOMENTO_ENDPOINT: props.momentoEndpoint ?? '',
      TOPIC_RELAY__SERVER__OPS_LISTEN: `0.0.0.0:${OPS_PORT}`,
      TOPIC_RELAY__SERVER__DRAIN_DELAY: `${drainDelay.toSeconds()}s`,
      TOPIC_RELAY__SERVER__SHUTDOWN_GRACE: `${shutdownGrace.toSeconds()}s`,
      TOPIC_RELAY__DELIVERY__SPOOL_DIR: `${SPOOL_PATH}/spool`,
    };
    if (spool === 'efs') {
      // Deployments briefly run up to twice the tasks; each needs a slot of its own.
      environment.TOPIC_RELAY__DELIVERY__SPOOL_SLOTS = String(2 * maxTasks);
    }

    const container = task.addContainer('relay', {
      image: ecs.ContainerImage.fromAsset(REPOSITORY_ROOT, {
        file: 'Dockerfile',
        buildArgs: props.configFile ? { CONFIG_FILE: props.configFile } : undefined,
      }),
      environment,
      secrets: Object.fromEntries(SECRET_KEYS.map((key) => [key, ecs.Secret.fromSecretsManager(secret, key)])),
      portMappings: [{ containerPort: PORT }, { containerPort: OPS_PORT }],
      readonlyRootFilesystem: true,
      stopTimeout: cdk.Duration.seconds(Math.min(120, stopping.toSeconds() + 5)),
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'topic-relay', logGroup }),
      healthCheck: {
        command: ['CMD', '/usr/local/bin/topic-relay', 'healthcheck'],
        interval: cdk.Duration.seconds(10),
        timeout: cdk.Duration.seconds(3),
        startPeriod: cdk.Duration.seconds(10),
        retries: 3,
      },
    });

    if (spool === 'efs') {
      const fileSystem = new efs.FileSystem(this, 'Spools', {
        vpc,
        encrypted: true,
        throughputMode: efs.ThroughputMode.ELASTIC,
        // The spools hold events already answered 202: keep them if the stack goes.
        removalPolicy: cdk.RemovalPolicy.RETAIN,
      });
      const accessPoint = fileSystem.addAccessPoint('Relay', {
        path: '/topic-relay',
        createAcl: { ownerUid: RELAY_UID, ownerGid: RELAY_UID, permissions: '750' },
        posixUser: { uid: RELAY_UID, gid: RELAY_UID },
      });
      task.addVolume({
        name: 'spool',
        efsVolumeConfiguration: {
          fileSystemId: fileSystem.fileSystemId,
          transitEncryption: 'ENABLED',
          authorizationConfig: { accessPointId: accessPoint.accessPointId, iam: 'ENABLED' },
        },
      });
      fileSystem.grantReadWrite(task.taskRole);
      container.addMountPoints({ containerPath: SPOOL_PATH, sourceVolume: 'spool', readOnly: false });
      this.fileSystem = fileSystem;
    } else {
      task.addVolume({ name: 'spool' });
      container.addMountPoints({ containerPath: SPOOL_PATH, sourceVolume: 'spool', readOnly: false });
    }

    const service = new ecs.FargateService(this, 'Service', {
      cluster,
      taskDefinition: task,
      desiredCount: minTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
    });
    this.fileSystem?.connections.allowDefaultPortFrom(service);

    const balancer = new elbv2.ApplicationLoadBalancer(this, 'Balancer', { vpc, internetFacing: true });
    const https = balancer.addListener('Https', {
      port: 443,
      certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn)],
      sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
      // Anything not listed below, /v1/admin, /v1/status and /metrics included, stays private.
      defaultAction: elbv2.ListenerAction.fixedResponse(404, { contentType: 'text/plain', messageBody: 'not found' }),
    });
    balancer.addRedirect({ sourcePort: 80, targetPort: 443 });

    const targets = new elbv2.ApplicationTargetGroup(this, 'Relays', {
      vpc,
      port: PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [service],
      // Matches the relay's own drain and grace, so a stopping task finishes what it took.
      deregistrationDelay: stopping,
      healthCheck: {
        path: '/readyz',
        healthyHttpCodes: '200',
        interval: cdk.Duration.seconds(10),
        timeout: cdk.Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });
    const publicPaths = props.tokenVending ? ['/webhooks/*', '/v1/tokens'] : ['/webhooks/*'];
    https.addAction('Public', {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(publicPaths)],
      action: elbv2.ListenerAction.forward([targets]),
    });

    const scaling = service.autoScaleTaskCount({ minCapacity: minTasks, maxCapacity: maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: 60 });
    scaling.scaleOnRequestCount('Requests', { requestsPerTarget: 20000, targetGroup: targets });

    new cdk.CfnOutput(this, 'WebhookUrl', {
      value: `https://${balancer.loadBalancerDnsName}/webhooks/<name>`,
      description: 'Point the CNAME of your certificate at the balancer, then Momento at this path',
    });
  }

  /** The spools' file system, with `spool: "efs"`. */
  public fileSystem?: efs.FileSystem;
}
