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
//   worker (one user-assigned managed identity shared by a role's VMs)
//     role queues            Message Processor (peek, receive, delete) + lease renewer (update)
//     role poison queues     Message Sender (move a poisoned job aside)
//     instance queues        the same as role queues, per queue (instances) or by name prefix
//     its results container  blob writer, per role: the role's own identity when given
//                            (roles[].principalId), so a role can report for itself only
//     events queue           Message Sender (legacy: agents before 0.2 report here)
//     payloads container     Blob Data Reader (scripts and archives)
//     state container        read baselines/ and instances/; write instances/ only (ABAC)
//     logs container         blob writer: create log blobs; no read, no delete
//     account (optional)     provisioner: create queues and containers, no data access
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

@description('One object per role: {role, queue, poisonQueue, resultsContainer} = the role name and the role_queue, role_poison_queue and results_container of `rolecall names ROLE -o json`; optionally principalId, the object id of that role\'s own worker identity (the shared workerPrincipalId otherwise).')
param roles array

@description('Optional: instances known in advance, one object each: {instance, queue, poisonQueue} = instance_queue and instance_poison_queue of `rolecall names ROLE INSTANCE -o json`.')
param instances array = []

@description('Grant the worker its instance queues by name prefix (ABAC condition), for scale sets whose instance names are not known in advance. Any holder of the worker identity can then use any instance queue of the namespace; list instances instead for strict isolation.')
param grantInstanceQueuesByPrefix bool = true

@description('Prefix of every instance queue (Names.instance_queue); instance poison queues end in -poison.')
param instanceQueuePrefix string = '${namespace}-inst-'

@description('Principal (object) id of the worker user-assigned managed identity.')
param workerPrincipalId string

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

// Blob path prefixes in the state container (Names.baseline_blob, Names.instance_blob).
var baselinesPrefix = 'baselines/'
var instancesPrefix = 'instances/'

// An instance queue (not its poison queue), and an instance poison queue, by name.
var isInstanceQueue = '(${queueName} StringStartsWith \'${instanceQueuePrefix}\' AND ${queueName} StringNotLike \'*-poison\')'
var isInstancePoisonQueue = '(${queueName} StringStartsWith \'${instanceQueuePrefix}\' AND ${queueName} StringLike \'*-poison\')'

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

// --- worker: role queues (queue scope) -----------------------------------------------------

resource workerRoleProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(roleQueues[i].id, workerPrincipalId, messageProcessor)
  scope: roleQueues[i]
  properties: {
    roleDefinitionId: messageProcessor
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: claim and complete ${r.role} jobs'
  }
}]

resource workerRoleRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(roleQueues[i].id, workerPrincipalId, leaseRenewerId)
  scope: roleQueues[i]
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: renew and release leases on ${r.role} jobs'
  }
  dependsOn: [
    leaseRenewer
  ]
}]

resource workerRolePoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(rolePoisonQueues[i].id, workerPrincipalId, messageSender)
  scope: rolePoisonQueues[i]
  properties: {
    roleDefinitionId: messageSender
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: set aside poisoned ${r.role} jobs'
  }
}]

// --- worker: instance queues listed in advance (queue scope) -------------------------------

resource workerInstanceProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instanceQueues[i].id, workerPrincipalId, messageProcessor)
  scope: instanceQueues[i]
  properties: {
    roleDefinitionId: messageProcessor
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: claim and complete jobs for ${inst.instance}'
  }
}]

resource workerInstanceRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instanceQueues[i].id, workerPrincipalId, leaseRenewerId)
  scope: instanceQueues[i]
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: renew and release leases on jobs for ${inst.instance}'
  }
  dependsOn: [
    leaseRenewer
  ]
}]

resource workerInstancePoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (inst, i) in instances: {
  name: guid(instancePoisonQueues[i].id, workerPrincipalId, messageSender)
  scope: instancePoisonQueues[i]
  properties: {
    roleDefinitionId: messageSender
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: set aside poisoned jobs for ${inst.instance}'
  }
}]

// --- worker: instance queues by prefix (account scope, ABAC conditions) --------------------

resource workerPrefixProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantInstanceQueuesByPrefix) {
  name: guid(account.id, workerPrincipalId, messageProcessor, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: messageProcessor
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: instance queues ${instanceQueuePrefix}*'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/read\'}) AND !(ActionMatches{\'${messages}/process/action\'})) OR ${isInstanceQueue})'
  }
}

resource workerPrefixRenewer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantInstanceQueuesByPrefix) {
  name: guid(account.id, workerPrincipalId, leaseRenewerId, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: leaseRenewerId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: leases on instance queues ${instanceQueuePrefix}*'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/write\'})) OR ${isInstanceQueue})'
  }
  dependsOn: [
    leaseRenewer
  ]
}

resource workerPrefixPoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantInstanceQueuesByPrefix) {
  name: guid(account.id, workerPrincipalId, messageSender, instanceQueuePrefix)
  scope: account
  properties: {
    roleDefinitionId: messageSender
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: instance poison queues ${instanceQueuePrefix}*-poison'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${messages}/add/action\'})) OR ${isInstancePoisonQueue})'
  }
}

// --- worker: each role's results container, that role's own (container scope) -------------

resource workerResults 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (r, i) in roles: {
  name: guid(resultsContainers[i].id, r.?principalId ?? workerPrincipalId, blobWriterId)
  scope: resultsContainers[i]
  properties: {
    roleDefinitionId: blobWriterId
    principalId: r.?principalId ?? workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: ${r.role} reports its own hellos, started notes and completions'
  }
  dependsOn: [
    blobWriter
  ]
}]

// --- worker: legacy events, payloads, state, logs --------------------------------------------

resource workerEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(events.id, workerPrincipalId, messageSender)
  scope: events
  properties: {
    roleDefinitionId: messageSender
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker (before 0.2): hello, heartbeats and completions'
  }
}

resource workerPayloads 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(payloads.id, workerPrincipalId, blobDataReader)
  scope: payloads
  properties: {
    roleDefinitionId: blobDataReader
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: download job and baseline payloads'
  }
}

// Run records in the state container hold every run's job template, secret environment
// values included: the worker reads baselines/ and instance records (its own at start, to
// tell a restart from a second agent under its name) and nothing else there.
resource workerBaselines 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(state.id, workerPrincipalId, blobDataReader)
  scope: state
  properties: {
    roleDefinitionId: blobDataReader
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: read role baselines and instance records (${baselinesPrefix}, ${instancesPrefix})'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${blobs}/read\'})) OR (${blobPath} StringStartsWith \'${baselinesPrefix}\') OR (${blobPath} StringStartsWith \'${instancesPrefix}\'))'
  }
}

resource workerRecords 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(state.id, workerPrincipalId, blobWriterId)
  scope: state
  properties: {
    roleDefinitionId: blobWriterId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: write instance records (${instancesPrefix} only)'
    conditionVersion: '2.0'
    condition: '((!(ActionMatches{\'${blobs}/write\'}) AND !(ActionMatches{\'${blobs}/add/action\'})) OR (${blobPath} StringStartsWith \'${instancesPrefix}\'))'
  }
  dependsOn: [
    blobWriter
  ]
}

resource workerLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logs.id, workerPrincipalId, blobWriterId)
  scope: logs
  properties: {
    roleDefinitionId: blobWriterId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: upload full job logs'
  }
  dependsOn: [
    blobWriter
  ]
}

resource workerProvision 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (workerMayProvision) {
  name: guid(account.id, workerPrincipalId, provisionerId)
  scope: account
  properties: {
    roleDefinitionId: provisionerId
    principalId: workerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'rolecall worker: create its own instance queues (and confirm the rest exist)'
  }
  dependsOn: [
    provisioner
  ]
}

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
