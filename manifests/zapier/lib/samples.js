'use strict';

// Realistic, fictional samples. test/constraints.test.js checks that their keys
// are exactly the operations' outputFields.

const ACCOUNT_SAMPLE = {
  id: '6812345678901234567',
  uniqueId: 'dumpling.kitchen',
  nickname: 'Dumpling Kitchen',
  profileUrl: 'https://www.tiktok.com/@dumpling.kitchen',
  avatarThumb:
    'https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/7a1b2c3d4e5f~c5_100x100.jpeg',
  signature: 'Hand-folded dumplings every day 🥟 Recipes below',
  verified: true,
  privateAccount: false,
  secUid: 'MS4wLjABAAAAv7iSuuXDJGDvJkmH_vz1qkDZYo1apxgzaxdBSeIuPiM',
  followerCount: 1284031,
  followingCount: 312,
  heartCount: 40211876,
  videoCount: 587,
  diggCount: 10342,
};

const FOLLOW_EVENT_SAMPLE = {
  ...ACCOUNT_SAMPLE,
  followedBy: 'street.food.daily',
  detectedAt: '2026-11-25T14:00:00Z',
  sequence: 42,
  eventId: '1042',
  event: 'new_following',
};

const UNFOLLOW_EVENT_SAMPLE = {
  ...ACCOUNT_SAMPLE,
  unfollowedBy: 'street.food.daily',
  detectedAt: '2026-11-26T09:00:00Z',
  sequence: 57,
  eventId: '1057',
  event: 'unfollowed',
};

const CROWD_EVENT_SAMPLE = {
  // followedByHandles is a list (Zapier `list: true`): the watched handles that followed it.
  ...ACCOUNT_SAMPLE,
  followedByHandles: ['street.food.daily', 'noodle.nights', 'wok.this.way'],
  followedByCount: 3,
  detectedAt: '2026-11-26T11:30:00Z',
  sequence: 7,
  eventId: '1063',
  event: 'followed_by_many',
};

const FOLLOWING_SAMPLE = {
  // One object describing a list: the ids are on the line items (following[]id).
  handle: 'street.food.daily',
  following: [ACCOUNT_SAMPLE],
  count: 1,
  total: 318,
  hasMore: true,
  nextMinTime: 1764079200,
  pages: 1,
};

const CHECK_SAMPLE = {
  follows: true,
  account: ACCOUNT_SAMPLE,
  complete: true,
  pagesRead: 1,
};

const USAGE_SAMPLE = {
  // GET /v1/zapier/usage: one report (days and watches are line items).
  day: '2026-11-25',
  creditsToday: 212,
  dailyBudget: 300,
  budgetLeft: 88,
  resetsAt: '2026-11-26T00:00:00.000Z',
  creditsLast30Days: 5840,
  days: [{ day: '2026-11-25', credits: 212, refreshes: 205 }],
  watches: [
    {
      handle: 'street.food.daily',
      status: 'active',
      checkEvery: 'auto',
      lastCheckAt: '2026-11-25T13:58:00.000Z',
      nextCheckAt: '2026-11-25T14:04:00.000Z',
      creditsLast30Days: 2712,
    },
  ],
};

module.exports = {
  ACCOUNT_SAMPLE, FOLLOW_EVENT_SAMPLE, UNFOLLOW_EVENT_SAMPLE, CROWD_EVENT_SAMPLE, FOLLOWING_SAMPLE, CHECK_SAMPLE, USAGE_SAMPLE,
};
