/** The custom search attributes (all Keyword) operators filter workflows by in the UI. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const DrDatabase = defineSearchAttributeKey('DrDatabase', SearchAttributeType.KEYWORD);
export const DrTier = defineSearchAttributeKey('DrTier', SearchAttributeType.KEYWORD);
export const DrBackupId = defineSearchAttributeKey('DrBackupId', SearchAttributeType.KEYWORD);
export const DrScenario = defineSearchAttributeKey('DrScenario', SearchAttributeType.KEYWORD);
export const DrOutcome = defineSearchAttributeKey('DrOutcome', SearchAttributeType.KEYWORD);
