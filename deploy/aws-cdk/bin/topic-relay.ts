// The CDK app: `npm run synth` with no AWS account; `npx cdk deploy` to deploy. Every setting
// is a context value (-c key=value), so nothing needs a lookup.
import * as cdk from 'aws-cdk-lib';
import { SpoolStorage, TopicRelayStack } from '../lib/topic-relay-stack';

const app = new cdk.App();
const context = (key: string): string | undefined => app.node.tryGetContext(key);
const number = (key: string): number | undefined => {
  const value = context(key);
  return value === undefined ? undefined : Number(value);
};

new TopicRelayStack(app, 'TopicRelay', {
  webhooks: context('webhooks') === 'true',
  certificateArn: context('certificateArn'),
  secretName: context('secretName'),
  momentoEndpoint: context('momentoEndpoint'),
  spool: context('spool') as SpoolStorage | undefined,
  minTasks: number('minTasks'),
  maxTasks: number('maxTasks'),
  tokenVending: context('tokenVending') === 'true',
  configFile: context('configFile'),
});
