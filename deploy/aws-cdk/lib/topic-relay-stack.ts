// topic-relay on ECS Fargate: tasks that listen to your topics and share them, one owner per
// topic. Secrets come from Secrets Manager into the container's environment. With webhooks
// (the legacy path) or token vending on, an Application Load Balancer routes those alone
// publicly: the container twin of Momento's webhook Lambda stack.
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
  /**
   * Take Momento's webhook calls (the legacy path) too: an internet-facing load balancer
   * forwards /webhooks/* to the tasks, and the secret holds TOPIC_RELAY_WEBHOOK_SECRET.
   * Needs certificateArn and a configFile with a [webhooks] table.
   */
  readonly webhooks?: boolean;
  /** ACM certificate for the load balancer's HTTPS listener, with webhooks or token vending on (Momento calls https only). */
  readonly certificateArn?: string;
  /** Secrets Manager secret whose JSON holds MOMENTO_API_KEY and TOPIC_RELAY_ADMIN_TOKEN (and TOPIC_RELAY_WEBHOOK_SECRET with webhooks on). */
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
  /** Route POST /v1/tokens publicly, for relays with [tokens]; adds the load balancer. */
  readonly tokenVending?: boolean;
  /**
   * The relay's config, relative to the repository root; baked into the image. Default:
   * config/deploy/listen.toml, or config/default.toml with webhooks on.
   */
  readonly configFile?: string;
}

/** Environment variables the relay's config reads from the secret. */
export const SECRET_KEYS = ['MOMENTO_API_KEY', 'TOPIC_RELAY_ADMIN_TOKEN'] as const;
/** The webhook's signing secret, read from the secret too with webhooks on. */
export const WEBHOOK_SECRET_KEY = 'TOPIC_RELAY_WEBHOOK_SECRET';
/** The configuration baked in unless configFile names another. */
export const LISTEN_CONFIG = 'config/deploy/listen.toml';
export const WEBHOOK_CONFIG = 'config/default.toml';
/** The task's size, in CPU units (1024 = 1 vCPU) and MiB. */
export const TASK_CPU = 512;
/** The whole vCPUs of the task, at least one: what both of the relay's runtimes are sized to. */
const TASK_VCPUS = Math.max(1, Math.floor(TASK_CPU / 1024));
const TASK_MEMORY_MIB = 1024;

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
    const webhooks = props.webhooks ?? false;
    const balanced = webhooks || (props.tokenVending ?? false);
    if (balanced && !props.certificateArn) {
      throw new Error('webhooks and token vending need a load balancer, and it a certificate: pass -c certificateArn=arn:aws:acm:...');
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
      cpu: TASK_CPU,
      memoryLimitMiB: TASK_MEMORY_MIB,
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
      // "One per CPU" counts the host's CPUs, not the task's share of them: size both
      // runtimes to the task. One worker carries about as much as one per core, on less CPU
      // per item (docs/src/reference/configuration.md#server).
      TOPIC_RELAY__SERVER__THREADS: String(TASK_VCPUS),
      TOPIC_RELAY__SERVER__WORKER_THREADS: String(TASK_VCPUS),
    };
    if (spool === 'efs') {
      // Deployments briefly run up to twice the tasks; each needs a slot of its own.
      environment.TOPIC_RELAY__DELIVERY__SPOOL_SLOTS = String(2 * maxTasks);
    }

    const container = task.addContainer('relay', {
      image: ecs.ContainerImage.fromAsset(REPOSITORY_ROOT, {
        file: 'Dockerfile',
        buildArgs: { CONFIG_FILE: props.configFile ?? (webhooks ? WEBHOOK_CONFIG : LISTEN_CONFIG) },
      }),
      environment,
      secrets: Object.fromEntries(
        [...SECRET_KEYS, ...(webhooks ? [WEBHOOK_SECRET_KEY] : [])].map((key) => [key, ecs.Secret.fromSecretsManager(secret, key)]),
      ),
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

    const scaling = service.autoScaleTaskCount({ minCapacity: minTasks, maxCapacity: maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: 60 });
    if (balanced) {
      this.addBalancer(vpc, service, scaling, stopping, props.certificateArn!, webhooks, props.tokenVending ?? false);
    }
  }

  /**
   * The public entrance for webhooks and token vending: HTTPS, forwarding those paths alone
   * to the tasks, which it checks on /readyz.
   */
  private addBalancer(
    vpc: ec2.IVpc,
    service: ecs.FargateService,
    scaling: ecs.ScalableTaskCount,
    stopping: cdk.Duration,
    certificateArn: string,
    webhooks: boolean,
    tokenVending: boolean,
  ): void {
    const balancer = new elbv2.ApplicationLoadBalancer(this, 'Balancer', { vpc, internetFacing: true });
    const https = balancer.addListener('Https', {
      port: 443,
      certificates: [elbv2.ListenerCertificate.fromArn(certificateArn)],
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
    const publicPaths = [...(webhooks ? ['/webhooks/*'] : []), ...(tokenVending ? ['/v1/tokens'] : [])];
    https.addAction('Public', {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(publicPaths)],
      action: elbv2.ListenerAction.forward([targets]),
    });
    scaling.scaleOnRequestCount('Requests', { requestsPerTarget: 20000, targetGroup: targets });

    new cdk.CfnOutput(this, 'PublicUrl', {
      value: `https://${balancer.loadBalancerDnsName}`,
      description: 'Point the CNAME of your certificate at the balancer, then Momento at /webhooks/<name> on it',
    });
  }

  /** The spools' file system, with `spool: "efs"`. */
  public fileSystem?: efs.FileSystem;
}
