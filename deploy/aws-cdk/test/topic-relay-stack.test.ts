// The template's essentials, checked with aws-cdk-lib/assertions: `npm test`.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as cdk from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import {
  LISTEN_CONFIG,
  SECRET_KEYS,
  TASK_CPU,
  TopicRelayStack,
  TopicRelayStackProps,
  WEBHOOK_CONFIG,
  WEBHOOK_SECRET_KEY,
} from '../lib/topic-relay-stack';

const CERTIFICATE = 'arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000';

/** The stack as `npx cdk deploy` makes it with no context: tasks that listen. */
function synth(props: Partial<TopicRelayStackProps> = {}): Template {
  const app = new cdk.App();
  return Template.fromStack(new TopicRelayStack(app, 'Test', props));
}

/** The stack with webhooks on, behind its load balancer. */
function synthWebhooks(props: Partial<TopicRelayStackProps> = {}): Template {
  return synth({ webhooks: true, certificateArn: CERTIFICATE, ...props });
}

/** The build arguments of the image asset, from the cloud assembly's manifest. */
function buildArgs(props: Partial<TopicRelayStackProps>): Record<string, string> {
  const app = new cdk.App();
  new TopicRelayStack(app, 'Test', props);
  const assembly = app.synth();
  const assets = JSON.parse(fs.readFileSync(`${assembly.directory}/Test.assets.json`, 'utf8'));
  const images = Object.values(assets.dockerImages) as any[];
  assert.equal(images.length, 1);
  return images[0].source.dockerBuildArgs;
}

function container(template: Template): Record<string, any> {
  const tasks = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
  assert.equal(tasks.length, 1);
  return tasks[0].Properties.ContainerDefinitions[0];
}

function environment(template: Template): Record<string, string> {
  return Object.fromEntries(container(template).Environment.map((e: any) => [e.Name, e.Value]));
}

test('by default the tasks listen: no load balancer, no certificate, and the listening config baked in', () => {
  const template = synth();
  template.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 0);
  template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 0);
  template.resourceCountIs('AWS::ECS::Service', 1);
  assert.equal(container(template).HealthCheck.Command.join(' '), 'CMD /usr/local/bin/topic-relay healthcheck');
  assert.deepEqual(buildArgs({}), { CONFIG_FILE: LISTEN_CONFIG });
  assert.deepEqual(buildArgs({ webhooks: true, certificateArn: CERTIFICATE }), { CONFIG_FILE: WEBHOOK_CONFIG });
  assert.deepEqual(buildArgs({ configFile: 'config/mine.toml' }), { CONFIG_FILE: 'config/mine.toml' });
});

test('webhooks and token vending refuse to build without a certificate', () => {
  assert.throws(() => synth({ webhooks: true }), /certificate/);
  assert.throws(() => synth({ tokenVending: true }), /certificate/);
});

test('both runtimes are sized to the task, not to the host it lands on', () => {
  const env = environment(synth());
  const perVcpu = String(Math.max(1, Math.floor(TASK_CPU / 1024)));
  assert.equal(env.TOPIC_RELAY__SERVER__THREADS, perVcpu);
  assert.equal(env.TOPIC_RELAY__SERVER__WORKER_THREADS, perVcpu);
});

test('the target group checks /readyz', () => {
  synthWebhooks().hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
    HealthCheckPath: '/readyz',
    Matcher: { HttpCode: '200' },
  });
});

test('secrets come from Secrets Manager and never appear as plain values', () => {
  for (const [template, expected] of [
    [synth(), [...SECRET_KEYS]],
    [synthWebhooks(), [...SECRET_KEYS, WEBHOOK_SECRET_KEY]],
  ] as const) {
    const definition = container(template);
    const secrets = definition.Secrets.map((s: any) => s.Name).sort();
    assert.deepEqual(secrets, [...expected].sort());
    for (const secret of definition.Secrets) {
      assert.match(JSON.stringify(secret.ValueFrom), /secretsmanager/);
    }
    const plain = definition.Environment.map((e: any) => e.Name);
    for (const key of expected) {
      assert.ok(!plain.includes(key), `${key} must not be a plain environment variable`);
    }
  }
});

test('the public listener forwards only the webhooks, and answers 404 to everything else', () => {
  const template = synthWebhooks();
  const listeners = template.findResources('AWS::ElasticLoadBalancingV2::Listener', { Properties: { Port: 443 } });
  const https = Object.values(listeners)[0];
  assert.equal(https.Properties.DefaultActions[0].Type, 'fixed-response');
  assert.equal(https.Properties.DefaultActions[0].FixedResponseConfig.StatusCode, '404');
  const rules = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::ListenerRule'));
  const forwarded = rules.flatMap((rule: any) => rule.Properties.Conditions.flatMap((c: any) => c.PathPatternConfig?.Values ?? c.Values ?? []));
  assert.deepEqual(forwarded, ['/webhooks/*']);
  for (const path of forwarded) {
    assert.ok(!/admin|status|metrics/.test(path), `${path} must not be public`);
  }
});

test('the operator\'s routes listen on a port of their own, which the load balancer never targets', () => {
  const template = synthWebhooks();
  const definition = container(template);
  const ops = definition.Environment.find((e: any) => e.Name === 'TOPIC_RELAY__SERVER__OPS_LISTEN');
  assert.equal(ops?.Value, '0.0.0.0:9090');
  const groups = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup'));
  assert.deepEqual(groups.map((group: any) => group.Properties.Port), [8080]);
});

test('token vending adds /v1/tokens and nothing else', () => {
  const forwarded = (template: Template) =>
    Object.values(template.findResources('AWS::ElasticLoadBalancingV2::ListenerRule'))
      .flatMap((rule: any) => rule.Properties.Conditions.flatMap((c: any) => c.PathPatternConfig?.Values ?? c.Values ?? []))
      .sort();
  assert.deepEqual(forwarded(synthWebhooks({ tokenVending: true })), ['/v1/tokens', '/webhooks/*']);
  assert.deepEqual(forwarded(synth({ tokenVending: true, certificateArn: CERTIFICATE })), ['/v1/tokens']);
});

test('stopping waits for the relay: stop timeout and deregistration cover drain + grace', () => {
  const drain = 7;
  const grace = 12;
  const template = synthWebhooks({ drainDelay: cdk.Duration.seconds(drain), shutdownGrace: cdk.Duration.seconds(grace) });
  assert.ok(container(template).StopTimeout >= drain + grace);
  const env = environment(template);
  assert.equal(env.TOPIC_RELAY__SERVER__DRAIN_DELAY, `${drain}s`);
  assert.equal(env.TOPIC_RELAY__SERVER__SHUTDOWN_GRACE, `${grace}s`);
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
    TargetGroupAttributes: Match.arrayWith([{ Key: 'deregistration_delay.timeout_seconds', Value: String(drain + grace) }]),
  });
});

test('by default each task spools on EFS, in a slot of its own', () => {
  const template = synth({ maxTasks: 6 });
  template.resourceCountIs('AWS::EFS::FileSystem', 1);
  assert.equal(environment(template).TOPIC_RELAY__DELIVERY__SPOOL_SLOTS, '12');
  assert.deepEqual(container(template).MountPoints, [
    { ContainerPath: '/var/lib/topic-relay', ReadOnly: false, SourceVolume: 'spool' },
  ]);
  assert.equal(container(template).ReadonlyRootFilesystem, true);
});

test('with ephemeral spools there is no file system', () => {
  const template = synth({ spool: 'ephemeral' });
  template.resourceCountIs('AWS::EFS::FileSystem', 0);
  assert.equal(environment(template).TOPIC_RELAY__DELIVERY__SPOOL_SLOTS, undefined);
});

test('the service scales between its bounds and logs to CloudWatch', () => {
  const template = synth({ minTasks: 3, maxTasks: 9 });
  template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 3, MaxCapacity: 9 });
  assert.equal(container(template).LogConfiguration.LogDriver, 'awslogs');
});
