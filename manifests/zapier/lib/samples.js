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

module.exports = { ACCOUNT_SAMPLE, FOLLOW_EVENT_SAMPLE, UNFOLLOW_EVENT_SAMPLE, FOLLOWING_SAMPLE, CHECK_SAMPLE };
