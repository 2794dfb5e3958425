'use strict';

// Zapier CLI app: "TikTok Following (DumplingAI)".
//
// It talks to OUR service, never to DumplingAI directly. Every URL is built
// from ONE setting, the environment variable API_BASE_URL (see lib/api.js),
// set on Zapier with:
//     zapier-platform env:set <version> API_BASE_URL=https://your-service
// Field lists come from fields.json, generated from the service's marshmallow
// schemas by generate_fields.py.

const { version } = require('./package.json');
const { version: platformVersion } = require('zapier-platform-core');

const authentication = require('./authentication');
const { addBearerHeader, handleErrors } = require('./lib/api');
const creditUsage = require('./searches/credit_usage');
const listFollowing = require('./searches/list_following');
const checkFollowing = require('./searches/check_following');
const { newFollowedAccount, newFollowingLegacy } = require('./triggers/new_following');
const newFollowingInstant = require('./triggers/new_following_instant');
const newUnfollow = require('./triggers/new_unfollow');
const newUnfollowInstant = require('./triggers/new_unfollow_instant');
const followedByMany = require('./triggers/followed_by_many');
const followedByManyInstant = require('./triggers/followed_by_many_instant');

// Only the definition keys Zapier knows (helpers such as listFollowEvents stay out).
const definitionOf = ({ key, noun, display, operation }) => ({ key, noun, display, operation });

module.exports = {
  version,
  platformVersion,

  flags: {
    // Let 429 answers reach handleErrors so ThrottledError carries the
    // service's sentence and its Retry-After (core 18+ throws early otherwise).
    throwForThrottlingEarly: false,
  },

  authentication,
  beforeRequest: [addBearerHeader],
  afterResponse: [handleErrors],

  triggers: {
    [newFollowedAccount.key]: definitionOf(newFollowedAccount),
    [newFollowingLegacy.key]: definitionOf(newFollowingLegacy),
    [newFollowingInstant.key]: definitionOf(newFollowingInstant),
    [newUnfollow.key]: definitionOf(newUnfollow),
    [newUnfollowInstant.key]: definitionOf(newUnfollowInstant),
    [followedByMany.key]: definitionOf(followedByMany),
    [followedByManyInstant.key]: definitionOf(followedByManyInstant),
  },
  searches: {
    [listFollowing.key]: definitionOf(listFollowing),
    [checkFollowing.key]: definitionOf(checkFollowing),
    [creditUsage.key]: definitionOf(creditUsage),
  },
  creates: {},
};
