// rolecall: the storage account, its containers and queues, and least-privilege role
// assignments for the worker (every instance) and the controller (operators).
//
// Storage names are never derived here: they come in as parameters, produced by
// `rolecall names ROLE [INSTANCE] -o json` (schemas/names.py is the only place that spells
// them; tests/test_deploy.py checks main.parameters.json against it). The one exception is
// the defaults below, which follow the same rules for the default namespace and are checked
// by the same test.
//
// What each identity can do, and why nothing more (see docs/deploy.md):
//
//   worker of a role (one user-assigned managed identity per role: roles[].principalId)
//     its role queue         Message Processor (peek, receive, delete) + lease renewer (update)
//     its role poison queue  Message Sender (move a poisoned job aside)
//     its instance queues    the same, per queue (instances[], with the role's principalId)
//                            or by the role's instance-name prefix (roles[].instancePrefix, ABAC)
//     its results container  blob writer: the role reports for itself only
//     state container        read its own baseline blob and under its own instances/<role>/
//                            (its record, at start); write under instances/<role>/ only (ABAC)
//     shared by every role   payloads: Blob Data Reader; logs: blob writer (create, no read,
//                            no delete); events queue: Message Sender (agents before 0.2);
//                            account (optional): provisioner, no data access
//   controller (operators' group, or the identity of a VM running `rolecall controller`)
//     account                Storage Queue Data Contributor + Storage Blob Data Contributor
//
// Built-in roles cannot express two things the worker needs without granting much more, so
// two small custom roles are defined in this resource group:
//   * "lease renewer": Update Message needs queues/messages/write, which Message Processor
//     lacks; the next built-in role that has it (Queue Data Contributor) can also delete and
//     re-create the queue.
//   * "blob writer": Storage Blob Data Contributor can also delete blobs and delete the
//     container itself (containers/delete), which no instance should be able to do.
// Creating role definitions needs Owner or User Access Administrator on the resource group.

targetScope = 'resourceGroup'

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Region of the storage account.')
param location string = resourceGroup().location

@description('Replication. ZRS or GZRS where the region offers them.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Allow account-key (Shared Key) requests, connection strings and account-key SAS. Off: every request is authorized by Microsoft Entra ID and RBAC.')
param allowSharedKeyAccess bool = false

@description('rolecall namespace (ROLECALL_NAMESPACE); 1-12 lowercase letters, digits, hyphens.')
@minLength(1)
@maxLength(12)
param namespace string = 'rc'

@description('`rolecall names ROLE -o json`: payloads_container.')
param payloadsContainer string = '${namespace}-payloads'

@description('`rolecall names ROLE -o json`: state_container.')
param stateContainer string = '${namespace}-state'

@description('`rolecall names ROLE -o json`: logs_container.')
param logsContainer string = '${namespace}-logs'

@description('`rolecall names ROLE -o json`: events_queue.')
param eventsQueue string = '${namespace}-events'

@description('`rolecall names ROLE -o json`: events_poison_queue.')
param eventsPoisonQueue string = '${namespace}-events-poison'

@description('One object per role: {role, queue, poisonQueue, resultsContainer, baselineBlob, instancesPrefix, principalId} = the role name; the role_queue, role_poison_queue, results_container, baseline_blob and instances_prefix of `rolecall names ROLE -o json`; the object id of that role\'s own worker identity. Optionally instancePrefix: the start of the names of the role\'s instances (a scale set\'s computer name prefix), to grant its instance queues by name prefix; prefixes of different roles must not start one another.')
param roles array

@description('Optional: instances known in advance, one object each: {instance, queue, poisonQueue, principalId} = instance_queue and instance_poison_queue of `rolecall names ROLE INSTANCE -o json`, and the principalId of its role\'s identity.')
param instances array = []

@description('Prefix of every instance queue (Names.instance_queue); instance poison queues end in -poison.')
param instanceQueuePrefix string = '${namespace}-inst-'

@description('Let the worker create queues and containers (no data access). The agent creates what is missing at boot and, today, stops if refused; turn this off once it treats a refusal as "provisioned by the deployment".')
param workerMayProvision bool = true

@description('Principal (object) id of the controller: the operators\' Entra group, a user, or the managed identity of a VM running `rolecall controller`.')
param controllerPrincipalId string

@description('Type of controllerPrincipalId.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param controllerPrincipalType string = 'Group'

// Azure built-in role definition ids, named. The same table is deploy/azure/roles.json; the
// ids were checked against Microsoft's "Azure built-in roles for Storage" reference.
var builtInRoles = {
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  queueMessageProcessor: '8a0f0c08-91a1-4084-bc3d-661d67233fed' // Storage Queue Data Message Processor
  queueMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender
}

var blobDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.blobDataContributor)
var blobDataReader = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.blobDataReader)
var queueDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.queueDataContributor)
var messageProcessor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.queueMessageProcessor)
var messageSender = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.queueMessageSender)

var messages = 'Microsoft.Storage/storageAccounts/queueServices/queues/messages'
var blobs = 'Microsoft.Storage/storageAccounts/blobServices/containers/blobs'
var queueName = '@Resource[Microsoft.Storage/storageAccounts/queueServices/queues:name]'
var blobPath = '@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]'


// --- the account -------------------------------------------------------------------------

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  sku: {
    name: skuName
  }
  kind: 'StorageV2'
  properties: {
    accessTier: 'Hot'
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
  }
}

// Container soft delete guards against deleting a whole container by mistake. Blob soft
// delete is left off on purpose: every heartbeat overwrites an instance record, and each
// overwrite would be kept as a soft-deleted snapshot.
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource payloads 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: payloadsContainer
  properties: {
    publicAccess: 'None'
  }
}

resource state 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: stateContainer
  properties: {
    publicAccess: 'None'
  }
}

resource logs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: logsContainer
  properties: {
    publicAccess: 'None'
  }
}

// One per role: its reports, a blob each (create-only for the role's own identity).
resource resultsContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for r in roles: {
  parent: blobService
  name: r.resultsContainer
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource events 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: eventsQueue
}

resource eventsPoison 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: eventsPoisonQueue
}

resource roleQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for r in roles: {
  parent: queueService
  name: r.queue
}]

resource rolePoisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for r in roles: {
  parent: queueService
  name: r.poisonQueue
}]

resource instanceQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for i in instances: {
  parent: queueService
  name: i.queue
}]

resource instancePoisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for i in instances: {
  parent: queueService
  name: i.poisonQueue
}]

// --- custom roles: only what no built-in role grants without much more ---------------------

resource leaseRenewer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, storageAccountName, 'rolecall-lease-renewer')
  properties: {
    roleName: 'rolecall lease renewer (${storageAccountName})'
    description: 'Update Message: extend or release a claimed message (a job lease). Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          '${messages}/write'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource blobWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, storageAccountName, 'rolecall-blob-writer')
  properties: {
    roleName: 'rolecall blob writer (${storageAccountName})'
    description: 'Create or overwrite blobs. No read, no delete, no container rights.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          '${blobs}/write'
          '${blobs}/add/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource provisioner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (workerMayProvision) {
  name: guid(resourceGroup().id, storageAccountName, 'rolecall-provisioner')
  properties: {
    roleName: 'rolecall worker provisioner (${storageAccountName})'
    description: 'Create queues and containers (Create Queue, Create Container). No data access.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/queueServices/queues/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

var leaseRenewerId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', leaseRenewer.name)
var blobWriterId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobWriter.name)
var provisionerId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, storageAccountName, 'rolecall-provisioner'))

// --- workers: each role's own identity, on that role's queues and blobs only ---------------
//
// Every assignment below names a role's own principal (roles[].principalId). Where a scope
// is the role's own queue or container, the scope is the limit; where it is shared (the
// state container, instance queues by prefix), an ABAC condition pins it to the role's
// blob path or queue-name prefix. Shared by every role, as the SAS bundle is: reading
// payloads (content-addressed), creating log blobs, the legacy events queue, provisioning.

resource workerRoleProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(roleQueues[i].id, r.principalId, messageProcessor)
  scope: roleQueues[i]
  properties: {
    roleDefinitionId: messageProcessor
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: claim and complete its jobs'
  }
}]

resource workerRoleRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(roleQueues[i].id, r.principalId, leaseRenewerId)
  scope: roleQueues[i]
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: renew and release leases on its jobs'
  }
  dependsOn: [
    leaseRenewer
  ]
}]

resource workerRolePoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(rolePoisonQueues[i].id, r.principalId, messageSender)
  scope: rolePoisonQueues[i]
  properties: {
    roleDefinitionId: messageSender
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: set aside its poisoned jobs'
  }
}]

resource workerResults 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(resultsContainers[i].id, r.principalId, blobWriterId)
  scope: resultsContainers[i]
  properties: {
    roleDefinitionId: blobWriterId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: its hellos, started notes and completions'
  }
  dependsOn: [
    blobWriter
  ]
}]

// Run records in the state container hold every run's job template, secret environment
// values included: a role's identity reads its own baseline and its role's instance records
// (a worker reads its own at start, to tell a restart from a second agent under its name)
// and nothing else there.
resource workerBaselines 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(state.id, r.principalId, blobDataReader)
  scope: state
  properties: {
    roleDefinitionId: blobDataReader
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: read its baseline and instance records (${r.baselineBlob}, ${r.instancesPrefix})'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${blobs}/read\'})) OR (${blobPath} StringEquals \'${r.baselineBlob}\') OR (${blobPath} StringStartsWith \'${r.instancesPrefix}\'))'
  }
}]

resource workerRecords 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(state.id, r.principalId, blobWriterId)
  scope: state
  properties: {
    roleDefinitionId: blobWriterId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: write its instance records (${r.instancesPrefix} only)'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${blobs}/write\'}) AND !(ActionMatches{\'${blobs}/add/action\'})) OR (${blobPath} StringStartsWith \'${r.instancesPrefix}\'))'
  }
  dependsOn: [
    blobWriter
  ]
}]

// --- workers: instance queues listed in advance (queue scope, the instance's role) ---------

resource workerInstanceProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instanceQueues[i].id, inst.principalId, messageProcessor)
  scope: instanceQueues[i]
  properties: {
    roleDefinitionId: messageProcessor
    principalId: inst.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: claim and complete jobs for ${inst.instance}'
  }
}]

resource workerInstanceRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instanceQueues[i].id, inst.principalId, leaseRenewerId)
  scope: instanceQueues[i]
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: inst.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: renew and release leases on jobs for ${inst.instance}'
  }
  dependsOn: [
    leaseRenewer
  ]
}]

resource workerInstancePoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instancePoisonQueues[i].id, inst.principalId, messageSender)
  scope: instancePoisonQueues[i]
  properties: {
    roleDefinitionId: messageSender
    principalId: inst.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: set aside poisoned jobs for ${inst.instance}'
  }
}]

// --- workers: a scale set's instance queues by name prefix (ABAC, the role's prefix) --------

resource workerPrefixProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: if (contains(r, 'instancePrefix')) {
  name: guid(account.id, r.principalId, messageProcessor, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: messageProcessor
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: instance queues ${instanceQueuePrefix}${r.?instancePrefix}*'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/read\'}) AND !(ActionMatches{\'${messages}/process/action\'})) OR (${queueName} StringStartsWith \'${instanceQueuePrefix}${r.?instancePrefix}\' AND ${queueName} StringNotLike \'*-poison\'))'
  }
}]

resource workerPrefixRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: if (contains(r, 'instancePrefix')) {
  name: guid(account.id, r.principalId, leaseRenewerId, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: leases on instance queues ${instanceQueuePrefix}${r.?instancePrefix}*'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/write\'})) OR (${queueName} StringStartsWith \'${instanceQueuePrefix}${r.?instancePrefix}\' AND ${queueName} StringNotLike \'*-poison\'))'
  }
  dependsOn: [
    leaseRenewer
  ]
}]

resource workerPrefixPoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: if (contains(r, 'instancePrefix')) {
  name: guid(account.id, r.principalId, messageSender, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: messageSender
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: instance poison queues ${instanceQueuePrefix}${r.?instancePrefix}*-poison'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/add/action\'})) OR (${queueName} StringStartsWith \'${instanceQueuePrefix}${r.?instancePrefix}\' AND ${queueName} StringLike \'*-poison\'))'
  }
}]

// --- workers: what every role shares -----------------------------------------------------------

resource workerEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(events.id, r.principalId, messageSender)
  scope: events
  properties: {
    roleDefinitionId: messageSender
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role} (agents before 0.2): hello, heartbeats and completions'
  }
}]

resource workerPayloads 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(payloads.id, r.principalId, blobDataReader)
  scope: payloads
  properties: {
    roleDefinitionId: blobDataReader
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: download job and baseline payloads'
  }
}]

resource workerLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: {
  name: guid(logs.id, r.principalId, blobWriterId)
  scope: logs
  properties: {
    roleDefinitionId: blobWriterId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: upload full job logs'
  }
  dependsOn: [
    blobWriter
  ]
}]

resource workerProvision 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in roles: if (workerMayProvision) {
  name: guid(account.id, r.principalId, provisionerId)
  scope: account
  properties: {
    roleDefinitionId: provisionerId
    principalId: r.principalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker of ${r.role}: create its own instance queues (and confirm the rest exist)'
  }
  dependsOn: [
    provisioner
  ]
}]

// --- controller: the whole account's queues and blobs ----------------------------------------

resource controllerQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, controllerPrincipalId, queueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: queueDataContributor
    principalId: controllerPrincipalId
    principalType: controllerPrincipalType
    description: 'rolecall controller: dispatch jobs, fold events, manage poison queues'
  }
}

resource controllerBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, controllerPrincipalId, blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: blobDataContributor
    principalId: controllerPrincipalId
    principalType: controllerPrincipalType
    description: 'rolecall controller: payloads, baselines, run records, logs'
  }
}

output storageAccountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output workerEnvironment string = 'ROLECALL_ACCOUNT_NAME=${account.name}\nROLECALL_NAMESPACE=${namespace}\nROLECALL_USE_IMDS=true'
